"""Celery workers: thin tasks over relay/ functions, which tests call directly."""
