"""Thread resolution: explicit code, last-notified case within the window, else ask."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from relay.discussion import threads
from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.model.tables import Delivery, utcnow
from relay.notices.lifecycle import new_case_notice
from tests.conftest import run_worker
from tests.helpers import event, record_sms

LEE = "+821012345602"


@pytest.mark.parametrize("body,number,rest", [
    ("C123 looks like OP", 123, "looks like OP"),
    ("c123: looks like OP", 123, "looks like OP"),
    ("#123 looks like OP", 123, "looks like OP"),
    ("123: looks like OP", 123, "looks like OP"),
    ("  C7\nmultiline\ntext", 7, "multiline\ntext"),
    ("C123", 123, ""),
    ("123 looks like OP", None, "123 looks like OP"),
    ("CT shows GGO", None, "CT shows GGO"),
    ("C123abc text", None, "C123abc text"),
    ("covid C123", None, "covid C123"),
])
def test_split_case_code(body, number, rest):
    assert threads.split_case_code(body) == (number, rest)


def notify_c1_then_c2_hours_later(network) -> None:
    with transaction(network.sessions) as session:
        create_case(session, "Second case")
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    with transaction(network.sessions) as session:
        session.execute(update(Delivery).values(created_at=utcnow() - timedelta(hours=5)))
    new_case_notice(network, "C2", ["tft"])
    run_worker(network)


def test_explicit_code_wins_over_the_last_notified_case(network, sms):
    notify_c1_then_c2_hours_later(network)
    event_id = record_sms(network, LEE, "#1 back to the first case")
    run_worker(network)
    assert event(network, event_id).outcome == "posted"
    assert any(m.body == "C1 Lee Minho: back to the first case" for m in sms.sent)


def test_unknown_case_code_is_answered(network, sms):
    event_id = record_sms(network, LEE, "C99 hello")
    run_worker(network)
    assert event(network, event_id).outcome == "unknown_case"
    assert sms.sent[-1].body.endswith("there is no case C99. Check the code in the notice and send again.")


def test_outside_the_reply_window_we_ask(network, sms):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    with transaction(network.sessions) as session:
        session.execute(update(Delivery).values(created_at=utcnow() - network.settings.reply_window
                                                - timedelta(minutes=1)))
    event_id = record_sms(network, LEE, "late reply")
    run_worker(network)
    assert event(network, event_id).outcome == "asked:none"


def test_two_cases_notified_close_together_is_ambiguous(network, sms):
    with transaction(network.sessions) as session:
        create_case(session, "Second case")
    new_case_notice(network, "C1", ["tft"])
    new_case_notice(network, "C2", ["tft"])
    run_worker(network)
    sms.sent.clear()
    event_id = record_sms(network, LEE, "which one?")
    run_worker(network)
    assert event(network, event_id).outcome == "asked:ambiguous"
    [ask] = sms.sent
    assert ask.to == LEE and "C2" in ask.body and "C1" in ask.body


def test_the_most_recent_case_wins_when_clearly_later(network, sms):
    notify_c1_then_c2_hours_later(network)
    event_id = record_sms(network, LEE, "bare reply")
    run_worker(network)
    assert event(network, event_id).outcome == "posted"
    assert any(m.body == "C2 Lee Minho: bare reply" for m in sms.sent)


def test_closed_case_is_refused(network, sms):
    from relay.model.tables import Case

    with transaction(network.sessions) as session:
        session.execute(update(Case).values(status="closed"))
    event_id = record_sms(network, LEE, "C1 still there?")
    run_worker(network)
    assert event(network, event_id).outcome == "closed_case"
    assert "closed" in sms.sent[-1].body


def test_empty_post_is_not_relayed(network, sms):
    event_id = record_sms(network, LEE, "C1")
    run_worker(network)
    assert event(network, event_id).outcome == "empty"
    assert len(sms.sent) == 1 and sms.sent[0].to == LEE
