"""workers/kombu_guard.py: acknowledging a task on a channel whose broker connection was closed (what
kombu does when Redis vanishes) is a logged connection error, not the AttributeError that made the
Celery worker exit (docs/RELIABILITY.md section 2)."""
from __future__ import annotations

import logging

import pytest
from kombu import Connection
from kombu.message import Message

from workers import kombu_guard


def _orphaned_ack(redis_url: str):
    """A message received on a channel whose connection then dropped its transport (kombu's
    Connection._do_close_transport, part of collect() and _close(), sets the transport's client to
    None) while the consumer still held the channel: the state the worker met in the fault test."""
    connection = Connection(redis_url)
    channel = connection.channel()
    errors = connection.connection_errors + connection.channel_errors
    connection._do_close_transport()
    channel._client = channel._pool = None  # the lost client is gone: acknowledging must build a new one
    message = Message(body=b"{}", delivery_tag="relay-guard-test", channel=channel)
    return message, errors


def test_without_the_guard_the_ack_raises_attribute_error(redis_url, monkeypatch):
    from kombu.transport import redis as kombu_redis

    if getattr(kombu_redis.Channel._connparams, "relay_guard", False):
        pytest.skip("the guard is already installed in this process")
    message, errors = _orphaned_ack(redis_url)
    with pytest.raises(AttributeError, match="hostname"):
        message.ack_log_error(logging.getLogger("test"), errors)


def test_with_the_guard_the_ack_is_a_logged_connection_error(redis_url, monkeypatch, caplog):
    from kombu.transport import redis as kombu_redis

    monkeypatch.setattr(kombu_redis.Channel, "_connparams", kombu_redis.Channel._connparams)  # undone after
    assert kombu_guard.install()
    assert kombu_guard.install()  # once only
    message, errors = _orphaned_ack(redis_url)
    with caplog.at_level(logging.CRITICAL):
        message.ack_log_error(logging.getLogger("test"), errors)  # does not raise
    assert "Couldn't ack" in caplog.text and "closed" in caplog.text
