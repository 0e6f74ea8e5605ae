"""The bulk sender's event-loop path (relay/outbound/async_batch.py; RELAY_SEND_ASYNC) sends exactly what
the threaded path sends, and handles the providers' faults the same way.

The same deliveries go out twice over real HTTP and SMTP, once on threads and once from the loop, to the
capturing Twilio stand-in (the one the OpenAPI test uses) and the aiosmtpd sink: every Twilio request
(method, target, headers but the transport's own, body bytes) and every email (envelope sender, recipients,
message bytes) must be identical. Then each kind of fault (a 429 with Retry-After, a 503, Twilio's 21610
opt-out, a 400 21211, Twilio unreachable, SMTP 451 and 550) leaves the deliveries in the same state."""
from __future__ import annotations

import email.generator
import socket
from collections import Counter

import pytest
from sqlalchemy import select, update

from relay.infra.db import transaction
from relay.infra.dispatch import RecordingDispatcher
from relay.library.cases import create_case
from relay.members.directory import import_members
from relay.model.tables import Delivery, Member
from relay.notices.lifecycle import new_case_notice
from relay.outbound import async_batch
from relay.outbound.bulk import send_batch
from relay.services import build_services
from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, DEMO_CSV, OUR_NUMBER, make_settings
from tests.standins.smtp_sink import SmtpSink
from tests.unit.providers.test_twilio_openapi import CapturingStandIn

# Headers the HTTP library itself writes (requests vs aiohttp), not twilio: how bytes travel, not what is said.
TRANSPORT_HEADERS = {"accept-encoding", "connection", "content-length", "host"}


@pytest.fixture
def standin():
    standin = CapturingStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def sink():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def _services(tmp_path, database_url, standin, sink, send_async: bool, **overrides):
    settings = make_settings(tmp_path / f"var-{send_async}", database_url, twilio_account_sid=ACCOUNT_SID,
                             twilio_auth_token=AUTH_TOKEN, twilio_from=OUR_NUMBER, twilio_api_url=standin.url,
                             smtp_url=sink.url, mail_from="cases@relay.example.org", secret_key="test-secret",
                             send_async=send_async, max_send_attempts=3, sms_rate="0", **overrides)
    return build_services(settings, dispatcher=RecordingDispatcher())


@pytest.fixture
def both(tmp_path, database_url, standin, sink):
    """Two services over one database: threads and the event loop; the network and a notice's batch."""
    threaded = _services(tmp_path, database_url, standin, sink, send_async=False)
    looped = _services(tmp_path, database_url, standin, sink, send_async=True)
    with transaction(threaded.sessions) as session:
        assert not import_members(session, DEMO_CSV).errors
        create_case(session, "Fever and ground-glass opacities", chief_complaint="fever")
    result = new_case_notice(threaded, "C1", ["tft"])
    assert result.sms == 5 and result.emails == 5
    [batch] = threaded.dispatcher.batches
    yield threaded, looped, batch
    for services in (threaded, looped):
        services.sender("email").close()
        services.dispose()


def _requeue(services, batch) -> None:
    """The batch's deliveries back to queued, as if never sent."""
    with transaction(services.sessions) as session:
        session.execute(update(Delivery).where(Delivery.id.in_(batch)).values(
            status="queued", attempts=0, lease_until=None, next_attempt_at=None, provider_message_id=None,
            error_code=None, error_message=None, sent_at=None))


def _twilio_requests(standin) -> dict[str, tuple]:
    with standin.lock:
        raw = list(standin.raw)
        standin.raw.clear()
        standin.requests.clear()
    by_to = {}
    for r in raw:
        headers = tuple(sorted((k.lower(), v) for k, v in r.headers.items() if k.lower() not in TRANSPORT_HEADERS))
        to = dict(pair.split("=", 1) for pair in r.body.decode().split("&"))["To"]
        by_to[to] = (r.method, r.target, headers, r.body)
    return by_to


def _emails(sink) -> dict[str, tuple]:
    with sink.lock:
        received = list(sink.received)
        sink.received.clear()
    return {tuple(r.rcpt_tos)[0]: (r.mail_from, tuple(r.rcpt_tos), r.data) for r in received}


def test_the_event_loop_sends_byte_identical_requests_and_emails(both, standin, sink, monkeypatch):
    threaded, looped, batch = both
    # a MIME boundary is random each time a template is rendered, whichever path sends it: fixed here
    monkeypatch.setattr(email.generator.Generator, "_make_boundary",
                        classmethod(lambda cls, text=None: "===============0123456789=="))
    report = send_batch(threaded, batch)
    assert (report.sent, report.failed) == (10, 0)
    on_threads, mail_on_threads = _twilio_requests(standin), _emails(sink)

    _requeue(threaded, batch)
    report = send_batch(looped, batch)
    assert (report.sent, report.failed) == (10, 0)
    from_loop, mail_from_loop = _twilio_requests(standin), _emails(sink)

    assert len(on_threads) == 5 and len(mail_on_threads) == 5
    assert from_loop == on_threads  # method, target, twilio's headers (auth, user agent, ...), body bytes
    assert mail_from_loop == mail_on_threads  # VERP envelope, recipient, every byte of the message
    with threaded.sessions() as session:
        assert Counter(session.scalars(select(Delivery.status))) == {"accepted": 10}


def test_the_loop_path_is_used_when_on(both, monkeypatch):
    threaded, looped, batch = both
    calls = []
    real = async_batch.send_all
    monkeypatch.setattr(async_batch, "send_all", lambda *args: calls.append(len(args[1])) or real(*args))
    send_batch(threaded, batch)
    assert calls == []  # RELAY_SEND_ASYNC=off: threads
    _requeue(threaded, batch)
    send_batch(looped, batch)
    assert calls == [10]


def _unreachable_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


FAULTS = {
    "twilio 429 Retry-After": lambda standin, sink: [standin.fail_to(n, 429, 20429, "Too Many Requests")
                                                     for n in ("+821012345602", "+33612345604")],
    "twilio 503": lambda standin, sink: standin.fail_to("+821012345603", 503, None, "Service Unavailable"),
    "twilio 21610 opt-out": lambda standin, sink: standin.fail_to("+12025550105", 400, 21610, "unsubscribed"),
    "twilio 21211 bad number": lambda standin, sink: standin.fail_to("+33612345604", 400, 21211, "invalid To"),
    "smtp 451 and 550": lambda standin, sink: sink.refuse.update({"minho@example.org": "451 try later",
                                                                  "ben@example.org": "550 no such user"}),
}


def _outcome(services, batch) -> list[tuple]:
    with services.sessions() as session:
        rows = session.execute(select(Delivery.channel, Member.name, Delivery.status, Delivery.error_code,
                                      Delivery.attempts).join(Member, Member.id == Delivery.member_id)
                               .where(Delivery.id.in_(batch)).order_by(Delivery.id)).all()
        opted_out = sorted(session.scalars(select(Member.name).where(Member.sms_opted_out_at.is_not(None))))
    return [tuple(r) for r in rows] + [("sms opted out", tuple(opted_out))]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_faults_leave_the_same_state_on_threads_and_on_the_loop(both, standin, sink, fault):
    threaded, looped, batch = both
    outcomes = []
    for services in (threaded, looped):
        _requeue(threaded, batch)
        with transaction(threaded.sessions) as session:  # an opt-out at the provider is undone between runs
            session.execute(update(Member).values(sms_opted_out_at=None, email_opted_out_at=None))
        standin.faults_by_to.clear()
        sink.refuse.clear()
        FAULTS[fault](standin, sink)
        report = send_batch(services, batch)
        outcomes.append((report.sent, report.retry, report.deferred, report.failed, report.skipped,
                         _outcome(services, batch)))
    assert outcomes[0][0] < 10  # the fault happened
    assert outcomes[1] == outcomes[0], outcomes


def test_twilio_unreachable_is_a_network_error_on_the_loop_too(tmp_path, database_url, sink):
    class Nowhere:
        url = _unreachable_url()

    outcomes = []
    for send_async in (False, True):
        services = _services(tmp_path, database_url, Nowhere, sink, send_async=send_async)
        with transaction(services.sessions) as session:
            if send_async is False:
                assert not import_members(session, DEMO_CSV).errors
                create_case(session, "Fever", chief_complaint="fever")
        if send_async is False:
            new_case_notice(services, "C1", ["tft"])
            [batch] = services.dispatcher.batches
        else:
            _requeue(services, batch)
        report = send_batch(services, batch)
        with services.sessions() as session:
            outcomes.append((report.retry, sorted(session.scalars(select(Delivery.error_code).where(
                Delivery.channel == "sms")))))
        services.sender("email").close()
        services.dispose()
    assert outcomes[0] == (5, ["network"] * 5)
    assert outcomes[1] == outcomes[0], outcomes


def test_the_send_async_setting():
    from relay.infra.settings import Settings, SettingsError

    assert Settings.from_env({}).send_async is True  # the event loop by default
    assert Settings.from_env({"RELAY_SEND_ASYNC": "off"}).send_async is False
    assert Settings.from_env({"RELAY_SEND_ASYNC": "on"}).send_async is True
    with pytest.raises(SettingsError, match="RELAY_SEND_ASYNC"):
        Settings.from_env({"RELAY_SEND_ASYNC": "sometimes"})


class _CountingSender:
    """A channel's sender that answers after a short wait and counts how many of its sends are in flight."""

    def __init__(self, channel: str, fail: frozenset[int] = frozenset()):
        self.channel, self.fail = channel, fail
        self.in_flight = self.peak = self.peak_tasks = 0
        self.order: list[int] = []

    async def send_async(self, message):
        import asyncio

        from relay.model.messages import SendError, SendResult

        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.peak_tasks = max(self.peak_tasks, len(asyncio.all_tasks()))
        self.order.append(message.delivery_id)
        try:
            await asyncio.sleep(0.002 * (message.delivery_id % 3))
            if message.delivery_id in self.fail:
                raise SendError("refused", code="21211", retryable=False)
            return SendResult(provider_message_id=f"{self.channel}-{message.delivery_id}", provider_status="queued")
        finally:
            self.in_flight -= 1


def test_at_most_the_concurrency_in_flight_per_channel_and_results_in_order():
    from types import SimpleNamespace

    from relay.model.messages import OutboundMessage

    senders = {"sms": _CountingSender("sms", fail={7}), "email": _CountingSender("email")}
    services = SimpleNamespace(settings=SimpleNamespace(send_concurrency=3), sender=senders.__getitem__)
    messages = [OutboundMessage(i, "sms" if i % 2 else "email", f"to-{i}", "hi") for i in range(1, 26)]
    results = async_batch.send_all(services, messages, {m.delivery_id: 0 for m in messages})

    assert [m.delivery_id for m, *_ in results] == list(range(1, 26))  # the order of `messages`
    assert senders["sms"].peak == 3 and senders["email"].peak == 3  # the bound, per channel, reached
    assert sorted(senders["sms"].order) == list(range(1, 26, 2))  # each message sent exactly once
    assert sorted(senders["email"].order) == list(range(2, 26, 2))
    failed = [(m.delivery_id, e.code) for m, r, e, _ in results if e is not None]
    assert failed == [(7, "21211")]
    assert all(r.provider_message_id == f"{m.channel}-{m.delivery_id}" for m, r, e, _ in results if e is None)


def test_a_batch_is_sent_by_a_few_lanes_per_channel_not_a_task_per_message():
    """Issue 18: a task per message (and a semaphore to bound them) cost ~5 % of a worker's CPU per message; a
    batch is sent by RELAY_SEND_CONCURRENCY lanes per channel, as the raw clients of bench/raw_limit.py send."""
    from types import SimpleNamespace

    from relay.model.messages import OutboundMessage

    senders = {"sms": _CountingSender("sms"), "email": _CountingSender("email")}
    services = SimpleNamespace(settings=SimpleNamespace(send_concurrency=3), sender=senders.__getitem__)
    messages = [OutboundMessage(i, "sms" if i % 2 else "email", f"to-{i}", "hi") for i in range(1, 201)]
    results = async_batch.send_all(services, messages, {m.delivery_id: 0 for m in messages})
    assert all(error is None for _, _, error, _ in results) and len(results) == 200
    # the batch's own task and 3 lanes a channel (the loop may run a task of its own besides)
    assert max(s.peak_tasks for s in senders.values()) <= 1 + 3 * 2 + 1
