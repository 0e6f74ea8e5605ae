"""A worker process's warm-up (relay/outbound/warming.py): before its first task it compiles what a broadcast's
first batch would compile, renders the notice email templates, and leaves no trace."""
from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from relay.model.tables import Delivery, InboundEvent, Notice
from relay.notices.lifecycle import new_case_notice
from relay.outbound import template_cache, warming
from relay.outbound.bulk import send_batch
from relay.render import i18n
from relay.render.environment import environment
from relay.services import build_services
from tests.conftest import RecordingDispatcher


def _fresh(network):
    """Services as a new pool process builds them: their own engine, so nothing compiled yet."""
    return build_services(network.settings, dispatcher=RecordingDispatcher(), senders=dict(network.senders))


def _compiled(services) -> list[str]:
    """The statements the engine compiles from now on (SQLAlchemy's cache missed them)."""
    missed: list[str] = []

    @event.listens_for(services.engine, "after_cursor_execute")
    def seen(conn, cursor, statement, parameters, context, executemany):
        if context is not None and context.cache_hit == context.dialect.CACHE_MISS:
            missed.append(statement)

    return missed


def test_after_the_warm_up_a_broadcasts_first_batch_compiles_no_statement(network, mail):
    if network.engine.dialect.name != "postgresql":
        pytest.skip("the statements are warmed on PostgreSQL only (relay/outbound/warming.py)")
    new_case_notice(network, "C1", ["tft"])  # planned and queued: nothing sent yet
    batch = [d for batch in network.dispatcher.batches for d in batch]
    assert batch and not mail.sent
    template_cache.NOTICE_TEMPLATES._entries.clear()  # the worker's first render of this notice: its statements too
    fresh = _fresh(network)
    try:
        warming.warm_up(fresh)
        compiled = _compiled(fresh)
        report = send_batch(fresh, batch)
        assert report.sent == len(batch)
        assert compiled == []
    finally:
        fresh.dispose()


def test_without_the_warm_up_the_first_batch_compiles_its_statements(network, mail):
    """The test above can fail: the same batch on a fresh engine, not warmed, compiles."""
    new_case_notice(network, "C1", ["tft"])
    batch = [d for batch in network.dispatcher.batches for d in batch]
    template_cache.NOTICE_TEMPLATES._entries.clear()
    fresh = _fresh(network)
    try:
        compiled = _compiled(fresh)
        send_batch(fresh, batch)
        assert len(compiled) >= 5
    finally:
        fresh.dispose()


def test_the_warm_up_compiles_the_notice_email_templates_in_every_language(network):
    environment.cache_clear()
    warming.emails(network.settings)
    for language in i18n.languages():
        loaded = {template.name for template in environment(str(network.settings.templates_dir), language).cache.values()}
        assert {f"email/{language}/{name}" for name in ("post.txt", "post.html", "notice.txt", "notice.html")} <= loaded


def test_the_warm_up_writes_nothing_and_sends_nothing(network, mail, sms):
    new_case_notice(network, "C1", ["tft"])

    def state():
        with network.sessions() as session:
            return (sorted(session.execute(select(Delivery.id, Delivery.status, Delivery.attempts, Delivery.lease_until,
                                                  Delivery.sent_at, Delivery.provider_message_id)).all()),
                    session.scalar(select(func.count()).select_from(Notice)),
                    session.scalar(select(func.count()).select_from(InboundEvent)))

    before = state()
    warming.warm_up(network)
    assert state() == before
    assert not mail.sent and not sms.sent


def test_on_sqlite_the_warm_up_runs_no_statement(sqlite_url, tmp_path):
    """`relay up`'s embedded store has one writer at a time: the warm-up leaves it alone while the processes start."""
    from tests.conftest import make_settings

    services = build_services(make_settings(tmp_path / "var", sqlite_url), dispatcher=RecordingDispatcher(), senders={})
    try:
        ran: list[str] = []
        event.listen(services.engine, "before_cursor_execute", lambda *args: ran.append(args[2]))
        warming.warm_up(services)
        assert ran == []
    finally:
        services.dispose()


def test_a_pool_process_has_longer_to_warm_up_than_the_database_takes_to_refuse_a_connection():
    """Celery kills a pool process that has not said it is up within worker_proc_alive_timeout (4 s by default):
    the warm-up connects to the database, whose connect timeout alone could take longer."""
    from relay.infra.db import CONNECT_TIMEOUT_SECONDS
    from relay.infra.dispatch import celery_config
    from relay.infra.settings import Settings

    config = celery_config(Settings(broker_url="redis://127.0.0.1:6379/0"))
    assert config["worker_proc_alive_timeout"] >= 3 * CONNECT_TIMEOUT_SECONDS
