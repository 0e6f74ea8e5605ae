"""relay: SMS and email alert and discussion relay for professional medical networks.

The core package. It knows nothing of Flask or Celery: the web receiver (`webhooks/`) and the
workers (`workers/`) are thin shells that call into it.
"""
