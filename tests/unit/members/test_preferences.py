"""The preference page (a signed link in every email, no password) shows and changes the same ladder as
the SMS keywords, each change logged and confirmed by one email; the digest subscription form with double
opt-in; one-click unsubscribe from a digest, confirmed once."""
from __future__ import annotations

import json
import re
from email import message_from_bytes, policy

import pytest
from sqlalchemy import select

from relay.infra.db import transaction
from relay.infra.signing import signed_id
from relay.library.cases import create_case
from relay.model.tables import ChannelPreference, ConsentEvent, DigestSubscription
from relay.notices.lifecycle import create_notice, new_case_notice, send_notice
from relay.render.mail import preferences_url
from tests.conftest import run_worker
from tests.helpers import member, record_sms
from webhooks.app import create_app

KIM, LEE, PARK, ALICE, BEN = "+821012345601", "+821012345602", "+821012345603", "+33612345604", "+12025550105"
ALICE_EMAIL = "alice@example.org"


@pytest.fixture
def client(network):
    return create_app(services=network).test_client()


def page_of(services, phone: str) -> str:
    return "/preferences/" + signed_id(services.settings.secret(), "preferences", member(services, phone).id)


def log(services, phone: str):
    member_id = member(services, phone).id
    with services.sessions() as session:
        return [(e.channel, e.action, e.source) for e in session.scalars(
            select(ConsentEvent).where(ConsentEvent.member_id == member_id).order_by(ConsentEvent.id))]


def save(client, services, phone, **form):
    response = client.post(page_of(services, phone), data=form)
    run_worker(services)
    return response


def confirmations(mail, to=ALICE_EMAIL) -> list[str]:
    return [message_from_bytes(m.raw, policy=policy.default)["Subject"] for m in mail.sent
            if m.to == to and b"preferences were changed" in m.raw]


def emailed(services, case="C1", severity="routine") -> set[str]:
    mail = services.senders["email"]
    mail.sent.clear()
    with transaction(services.sessions) as session:
        notice_id = create_notice(session, kind="guideline", title="Guidance", body="text", lists=["tft"],
                                  case_code=case, severity=severity, channels="email").id
    send_notice(services, notice_id)
    run_worker(services)
    return {m.to for m in mail.sent}


def test_every_email_links_the_preference_page(network, mail):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    sent = next(m for m in mail.sent if m.to == ALICE_EMAIL)
    email = message_from_bytes(sent.raw, policy=policy.default)
    url = preferences_url(network.settings, member(network, ALICE).id)
    assert url in email.get_body(("plain",)).get_content()
    assert url in email.get_body(("html",)).get_content()


def test_the_page_shows_the_state_and_a_forged_link_gets_404(client, network):
    record_sms(network, ALICE, "PAUSE 24H")
    run_worker(network)
    page = client.get(page_of(network, ALICE))
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Paused until" in text and ALICE in text and ALICE_EMAIL in text and "Europe/Paris" in text
    genuine = page_of(network, ALICE)
    forged = genuine[:-1] + ("b" if genuine.endswith("a") else "a")  # one signature character changed
    assert client.get(forged).status_code == 404
    assert client.post("/preferences/1-notasignature", data={"email_mode": "stop"}).status_code == 404
    assert member(network, ALICE).email_opted_out_at is None


def test_mute_on_the_page_keeps_that_case_away_and_is_confirmed_once(client, network, mail):
    with transaction(network.sessions) as session:
        create_case(session, "Second")
    new_case_notice(network, "C1", ["tft"])
    new_case_notice(network, "C2", ["tft"])
    run_worker(network)
    mail.sent.clear()
    assert save(client, network, ALICE, email_mute="c1").status_code == 200
    assert log(network, ALICE) == [("email", "mute:C1", "web:preferences")]
    assert len(confirmations(mail)) == 1
    assert ALICE_EMAIL not in emailed(network, "C1", severity="urgent")
    assert ALICE_EMAIL in emailed(network, "C2")
    assert "unmute C1" in client.get(page_of(network, ALICE)).get_data(as_text=True)
    save(client, network, ALICE, email_unmute="C1")
    assert ALICE_EMAIL in emailed(network, "C1")


@pytest.mark.parametrize("form,action,routine,urgent", [
    ({"email_mode": "digest"}, "digest", False, True),
    ({"email_mode": "urgent_only"}, "urgent_only", False, True),
    ({"email_pause": "24H"}, "pause:24h", False, True),
    ({"email_pause": "7D"}, "pause:7d", False, True),
    ({"email_mode": "stop"}, "opt_out", False, False),
])
def test_each_step_of_the_ladder_on_the_page(client, network, mail, form, action, routine, urgent):
    new_case_notice(network, "C1", ["tft"])
    run_worker(network)
    mail.sent.clear()
    save(client, network, ALICE, **form)
    assert log(network, ALICE) == [("email", action, "web:preferences")]
    assert len(confirmations(mail)) == 1
    assert (ALICE_EMAIL in emailed(network)) is routine
    assert (ALICE_EMAIL in emailed(network, severity="urgent")) is urgent


def test_back_to_every_message_on_the_page(client, network, mail):
    save(client, network, ALICE, email_mode="urgent_only")
    save(client, network, ALICE, email_mode="all", email_pause="")
    assert [a for _, a, _ in log(network, ALICE)] == ["urgent_only", "all"]
    new_case_notice(network, "C1", ["tft"])
    assert ALICE_EMAIL in emailed(network)


def test_digest_on_the_page_subscribes_the_member_in_their_zone(client, network):
    save(client, network, ALICE, email_mode="digest")
    with network.sessions() as session:
        sub = session.scalar(select(DigestSubscription))
    assert (sub.channel, sub.address, sub.timezone, sub.status) == ("email", ALICE_EMAIL, "Europe/Paris", "active")


def test_saving_without_a_change_logs_and_sends_nothing(client, network, mail):
    # What the page shows unchanged (the test settings have quiet hours off: 00:00 to 00:00).
    response = save(client, network, ALICE, sms_mode="all", email_mode="all", sms_quiet_start="00:00",
                    sms_quiet_end="00:00", email_quiet_start="00:00", email_quiet_end="00:00", sms_pause="",
                    email_pause="", sms_mute="", email_mute="")
    assert response.status_code == 200 and "nothing changed" in response.get_data(as_text=True)
    assert log(network, ALICE) == [] and mail.sent == []


def test_quiet_hours_on_the_page(client, network):
    save(client, network, ALICE, sms_quiet_start="23:30", sms_quiet_end="6:00")
    with network.sessions() as session:
        pref = session.scalar(select(ChannelPreference))
    assert (pref.channel, pref.quiet_start, pref.quiet_end) == ("sms", "23:30", "06:00")
    assert log(network, ALICE) == [("sms", "quiet:23:30-06:00", "web:preferences")]


@pytest.mark.parametrize("form,reason", [
    ({"email_mode": "everything"}, "mode must be"), ({"email_mute": "C99"}, "no case C99"),
    ({"sms_quiet_start": "25:00", "sms_quiet_end": "07:00"}, "expected a time"),
    ({"email_pause": "forever"}, "pause must be"),
])
def test_bad_input_gets_400_with_the_reason_and_changes_nothing(client, network, mail, form, reason):
    response = save(client, network, ALICE, **form)
    assert response.status_code == 400 and reason in response.get_data(as_text=True)
    assert log(network, ALICE) == [] and mail.sent == []


def test_sms_stop_on_the_page_is_absolute_and_never_texted(client, network, sms, mail):
    save(client, network, ALICE, sms_mode="stop")
    assert member(network, ALICE).sms_opted_out_at is not None
    assert [m for m in sms.sent if m.to == ALICE] == []
    save(client, network, ALICE, sms_mode="all")  # only the member's START text lifts an SMS STOP
    assert member(network, ALICE).sms_opted_out_at is not None
    assert "Text START to resume" in client.get(page_of(network, ALICE)).get_data(as_text=True)


def test_subscribe_with_double_opt_in_then_one_click_unsubscribe_confirmed_once(client, network, mail):
    form = client.get("/digest/subscribe").get_data(as_text=True)
    assert "Intl.DateTimeFormat().resolvedOptions().timeZone" in form
    response = client.post("/digest/subscribe", data={"email": "Reader@Example.net", "frequency": "weekly",
                                                     "timezone": "Asia/Kathmandu", "hour": "6"},
                           environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 200 and "Check your email" in response.get_data(as_text=True)
    run_worker(network)
    with network.sessions() as session:
        sub = session.scalar(select(DigestSubscription))
    assert (sub.address, sub.status, sub.frequency, sub.timezone, sub.hour) == (
        "reader@example.net", "pending", "weekly", "Asia/Kathmandu", 6)
    evidence = json.loads(sub.consent_form)
    assert sub.consent_ip == evidence["ip"] == "203.0.113.9" and evidence["at"]
    assert evidence["form"]["email"] == "Reader@Example.net"
    [confirmation] = [m for m in mail.sent if m.to == "reader@example.net"]
    link = re.search(r"https://relay\.example\.org(/digest/confirm/\S+)", confirmation.raw.decode()).group(1)
    assert "Confirm" in client.get(link).get_data(as_text=True)  # a GET (a link scanner) confirms nothing
    with network.sessions() as session:
        assert session.get(DigestSubscription, sub.id).status == "pending"
    assert "You are subscribed" in client.post(link).get_data(as_text=True)
    with network.sessions() as session:
        assert session.get(DigestSubscription, sub.id).status == "active"
    assert client.post(link[:-1] + ("a" if link[-1] != "a" else "b")).status_code == 404

    from relay.render.digest_mail import digest_unsubscribe_url

    path = digest_unsubscribe_url(network.settings, sub.id).removeprefix("https://relay.example.org")
    mail.sent.clear()
    for _ in range(2):
        assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        run_worker(network)
    with network.sessions() as session:
        assert session.get(DigestSubscription, sub.id).status == "unsubscribed"
    assert [m.to for m in mail.sent] == ["reader@example.net"]
    assert b"unsubscribed from the relay digest" in mail.sent[0].raw


@pytest.mark.parametrize("data,reason", [
    ({"email": "not-an-address", "frequency": "daily", "timezone": "UTC", "hour": "7"}, "not an email address"),
    ({"email": "a@example.net", "frequency": "hourly", "timezone": "UTC", "hour": "7"}, "daily or weekly"),
    ({"email": "a@example.net", "frequency": "daily", "timezone": "Mars/Base", "hour": "7"}, "unknown time zone"),
    ({"email": "a@example.net", "frequency": "daily", "timezone": "UTC", "hour": "24"}, "0 to 23"),
])
def test_bad_subscriptions_get_400_with_the_reason(client, network, mail, data, reason):
    response = client.post("/digest/subscribe", data=data)
    assert response.status_code == 400 and reason in response.get_data(as_text=True)
    with network.sessions() as session:
        assert session.scalars(select(DigestSubscription)).all() == []


def test_the_open_form_sends_one_confirmation_per_address_per_hour(client, network, mail):
    data = {"email": "reader@example.net", "frequency": "daily", "timezone": "Europe/London", "hour": "7"}
    for _ in range(3):
        assert client.post("/digest/subscribe", data=data).status_code == 200
        run_worker(network)
    assert [m.to for m in mail.sent] == ["reader@example.net"]


def test_one_list_switched_to_digest_on_the_page(client, network, mail):
    """Ben is on tft and us. With tft digest-only by email, a routine notice to tft reaches him in the digest
    only; one to us (or to both) still comes by email; an urgent one to tft comes at once."""
    def to_ben(lists, severity="routine"):
        mail.sent.clear()
        with transaction(network.sessions) as session:
            notice_id = create_notice(session, kind="announcement", title="x", body="y", lists=lists,
                                      severity=severity, channels="email").id
        send_notice(network, notice_id)
        run_worker(network)
        return "ben@example.org" in {m.to for m in mail.sent}

    page = client.get(page_of(network, BEN)).get_data(as_text=True)
    assert 'name="email_digest_lists" value="tft"' in page and 'value="us"' in page
    save(client, network, BEN, email_lists_shown="1", email_digest_lists="tft")
    assert log(network, BEN) == [("email", "digest:tft", "web:preferences")]
    assert not to_ben(["tft"])
    assert to_ben(["us"]) and to_ben(["tft", "us"])
    assert to_ben(["tft"], severity="urgent")
    with network.sessions() as session:
        assert session.scalar(select(DigestSubscription)).address == "ben@example.org"
    save(client, network, BEN, email_lists_shown="1")  # unchecked: every message again
    assert log(network, BEN)[-1] == ("email", "all:tft", "web:preferences")
    assert to_ben(["tft"])


def test_a_signed_in_member_reaches_their_preference_page_from_the_library(network):
    from tests.console_helpers import LEE, give_password, sign_in
    from webhooks.app import create_app

    give_password(network, LEE)
    client = create_app(services=network).test_client()
    assert client.get("/preferences/").headers["Location"].startswith("/signin")
    sign_in(client, LEE)
    assert 'href="/preferences/"' in client.get("/library/").get_data(as_text=True)
    target = client.get("/preferences/").headers["Location"]
    page = client.get(target[len("https://relay.example.org"):])
    assert page.status_code == 200 and "minho@example.org" in page.get_data(as_text=True)


def test_the_open_subscribe_form_is_rate_limited(network):
    from webhooks.app import create_app

    client = create_app(services=network).test_client()
    codes = [client.post("/digest/subscribe", data={"email": f"r{i}@example.net", "frequency": "daily",
                                                    "timezone": "UTC", "hour": "7"}).status_code for i in range(12)]
    assert 429 in codes and codes[0] != 429


def test_a_refused_form_is_shown_again_with_the_error_and_the_entries_kept(client, network, mail):
    """Issue 15, item 11: not a bare 400 page — the form, the reason, and what the member typed."""
    response = save(client, network, ALICE, sms_quiet_start="25:00", sms_quiet_end="06:30", email_mute="C1",
                    email_mode="digest")
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="preferences-error"' in page and "Nothing was saved" in page
    assert 'name="sms_quiet_start" value="25:00"' in page and 'name="sms_quiet_end" value="06:30"' in page
    assert 'name="email_mute" placeholder="C123" size="8" value="C1"' in page
    assert re.search(r'name="email_mode" value="digest"\s+checked', page)
    assert '<form method="post"' in page and log(network, ALICE) == [] and mail.sent == []


def test_the_preferences_changed_email_says_what_changed(client, network, mail):
    assert save(client, network, ALICE, email_mode="digest", sms_pause="24H",
                sms_quiet_start="23:00", sms_quiet_end="06:00").status_code == 200
    [sent] = [m for m in mail.sent if m.to == ALICE_EMAIL and b"preferences were changed" in m.raw]
    text = message_from_bytes(sent.raw, policy=policy.default).get_body(("plain",)).get_content()
    assert "What changed:" in text
    for line in ("- SMS: paused for 24 hours", "- SMS: quiet hours 23:00 to 06:00",
                 "- Email: a daily digest instead"):
        assert line in text, text


def test_a_member_who_unsubscribed_gets_email_again_by_choosing_a_mode_on_the_page(client, network):
    """docs/email.md: the way back after an unsubscribe is the preference page (no command does it)."""
    save(client, network, ALICE, email_mode="stop")
    assert member(network, ALICE).email_opted_out_at is not None
    save(client, network, ALICE, email_mode="all")
    assert member(network, ALICE).email_opted_out_at is None
    assert [entry for entry in log(network, ALICE) if entry[0] == "email"][-1][2] == "web:preferences"
