"""The Celery producer: the adapter behind the Dispatcher port (relay/infra/dispatch.py) in the web
process, the command line and the workers' own dispatches.

The one module of the core that imports Celery. The contract "the core never imports Flask or Celery"
(pyproject.toml, [tool.importlinter]) names it in its ignore_imports: the port and everything that
dispatches work stay free of Celery, and the composition root (relay/services.py) plugs this in."""
from __future__ import annotations

from celery import Celery

from relay.infra.dispatch import celery_config
from relay.infra.settings import Settings


def make_celery_producer(settings: Settings) -> Celery:
    """A Celery app that only publishes tasks by name (relay.infra.dispatch.CeleryDispatcher)."""
    app = Celery("relay-producer", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app
