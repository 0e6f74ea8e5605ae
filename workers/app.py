"""The Celery application factory. Nothing is built at import; `relay worker` and `relay beat`
call create_celery() and run it in-process."""
from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from relay.infra.dispatch import QUEUE_MAINTENANCE, TASK_SEND_DIGESTS, TASK_SEND_SCHEDULED, TASK_SWEEP, celery_config
from relay.infra.settings import Settings

from .tasks import register_tasks

DIGESTS_EVERY_SECONDS = 15 * 60.0  # issue 5: every zone's delivery hour starts on a quarter hour (+5:45, +12:45)


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    if settings.broker_url.startswith(("redis://", "rediss://")):
        from .kombu_guard import install  # reason: only with a Redis broker (patches kombu's Redis transport)

        install()  # a lost connection is a reconnect, not an exit (workers/kombu_guard.py)
    app = Celery("relay", set_as_current=False)
    app.conf.update(celery_config(settings))
    every = settings.sweep_every.total_seconds()  # RELAY_SWEEP_EVERY, 30 s by default
    app.conf.beat_schedule = {
        "sweep": {"task": TASK_SWEEP, "schedule": every,
                  "options": {"queue": QUEUE_MAINTENANCE, "expires": every}},
        "send-scheduled-notices": {"task": TASK_SEND_SCHEDULED, "schedule": every,
                                   "options": {"queue": QUEUE_MAINTENANCE, "expires": every}},
        "send-digests": {"task": TASK_SEND_DIGESTS, "schedule": crontab(minute="*/15"),
                         "options": {"queue": QUEUE_MAINTENANCE, "expires": DIGESTS_EVERY_SECONDS}},
    }
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    app.conf.beat_schedule_filename = str(settings.var_dir / "celerybeat-schedule")

    register_tasks(app, settings)
    return app
