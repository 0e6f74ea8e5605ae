"""End-to-end tests: real gunicorn, Celery worker and `relay up` processes on loopback."""
