"""A worker keeps a notice's rendered email template across the batches of its broadcast
(relay/outbound/template_cache.py): one render per language for the whole broadcast, not per batch of
100, with memory bounded and nothing kept past its TTL or for other settings."""
from __future__ import annotations

from sqlalchemy import select

from relay.model.tables import Delivery, Notice
from relay.notices.lifecycle import dispatch_notice_batches, new_case_notice
from relay.outbound import template_cache
from relay.outbound.bulk import send_batch
from relay.outbound.template_cache import TemplateCache
from relay.render.mail import compose
from tests.unit.outbound.test_bulk import _same_email


def test_a_broadcast_in_many_batches_renders_each_language_once(network, mail):
    new_case_notice(network, "C1", ["tft"])
    with network.sessions() as session:
        notice = session.scalars(select(Notice)).one()
        network.dispatcher.batches.clear()
        dispatch_notice_batches(network, notice, batch_size=2)
    batches = network.dispatcher.batches
    assert len(batches) == 5
    before = template_cache.NOTICE_TEMPLATES.renders
    for batch in batches:
        send_batch(network, batch)
    assert len(mail.sent) == 5
    assert template_cache.NOTICE_TEMPLATES.renders - before == 2  # English and Korean, once each
    with network.sessions() as session:  # and every email still says what compose() says
        for sent in mail.sent:
            _same_email(sent.raw, compose(session, network.settings, session.get(Delivery, sent.delivery_id)).as_bytes())


def test_entries_expire_are_bounded_and_belong_to_their_settings():
    now = [0.0]
    cache = TemplateCache(size=2, ttl=10, clock=lambda: now[0])
    ours, theirs = object(), object()
    renders = []

    def render(value):
        return lambda: renders.append(value) or value

    assert cache.get(ours, "a", render("a1")) == "a1"
    assert cache.get(ours, "a", render("a2")) == "a1"  # kept
    assert cache.get(theirs, "a", render("t1")) == "t1"  # other settings: their own
    now[0] = 11
    assert cache.get(ours, "a", render("a3")) == "a3"  # past its TTL: rendered again
    cache.get(ours, "b", render("b1"))
    cache.get(ours, "c", render("c1"))
    assert len(cache._entries) == 2  # bounded: the oldest went
    assert renders == ["a1", "t1", "a3", "b1", "c1"]
