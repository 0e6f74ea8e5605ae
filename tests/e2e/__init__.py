"""End-to-end tests: real `relay web` (granian; gunicorn too for the main SMS flow), Celery worker and `relay up`
processes on loopback."""
