"""Services built once per process from settings: database, work queue, senders.

The composition root: the web app, the workers and the command line all get their collaborators
from here, and tests build the same object with fakes where the real thing cannot be reached."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from relay.inbound.spool_replay import Replayer
from relay.infra.celery_producer import make_celery_producer
from relay.infra.db import make_engine, make_session_factory
from relay.infra.dispatch import CeleryDispatcher, Dispatcher
from relay.infra.settings import Settings
from relay.infra.spool import Spool
from relay.providers import Sender, senders_for

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    dispatcher: Dispatcher
    senders: dict[str, Sender] = field(default_factory=dict)
    spool: Spool | None = None  # webhooks kept while the database is down (relay/infra/spool.py)
    replayer: Replayer | None = None  # this process's replay of it (relay/inbound/spool_replay.py)

    def sender(self, channel: str) -> Sender:
        return self.senders[channel]

    def dispose(self) -> None:
        if self.replayer is not None:
            self.replayer.stop()
        self.engine.dispose()


def make_doorbell(settings: Settings):
    """The webhook hand-off's doorbell, when the broker is Redis (None: one task per webhook)."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    from relay.infra.doorbell import RedisDoorbell  # reason: only with a Redis broker (loads redis)

    return RedisDoorbell.from_url(settings.broker_url, prefix=settings.broker_prefix)


def build_services(settings: Settings | None = None, *, dispatcher: Dispatcher | None = None,
                   senders: dict[str, Sender] | None = None, engine: Engine | None = None) -> Services:
    settings = settings or Settings.from_env()
    engine = engine or make_engine(settings.database_url)
    if dispatcher is None:
        dispatcher = CeleryDispatcher(make_celery_producer(settings), doorbell=make_doorbell(settings))
    if senders is None:
        senders = senders_for(settings)
    sessions = make_session_factory(engine)
    sessions.kw["info"] = {"quiet_hours": settings.quiet_hours}  # issue 5: read by relay/members/ladder.py
    spool = Spool(settings.spool_path, settings.spool_max_bytes, settings.spool_max_files)
    services = Services(settings=settings, engine=engine, sessions=sessions, dispatcher=dispatcher, senders=senders,
                        spool=spool)
    services.replayer = Replayer(services, spool)
    return services
