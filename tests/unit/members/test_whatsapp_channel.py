"""WhatsApp as a channel a member takes (issue 19): the CSV columns, `relay members channels`, the API,
the console (and its word when the channel is off), and the opt-in from the preference page, each
opt-in in the consent log with how it was given."""
from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import select

from relay.cli import main
from relay.infra.db import transaction
from relay.infra.signing import signed_id
from relay.members.directory import import_members
from relay.model.tables import ConsentEvent, Member
from tests.console_helpers import KIM as KIM_EMAIL
from tests.console_helpers import give_password, reads_english, sign_in
from tests.whatsapp_fixtures import LEE, PRIYA, PRIYA_WA
from webhooks.app import create_app

HEADER = "name,phone,email,timezone,language,lists,roles,channels,whatsapp,whatsapp_opt_in\n"


def member(services, phone: str) -> Member:
    with services.sessions() as session:
        return session.scalar(select(Member).where(Member.phone == phone))


def consent_log(services, phone: str):
    with services.sessions() as session:
        member_id = session.scalar(select(Member.id).where(Member.phone == phone))
        return session.execute(select(ConsentEvent.channel, ConsentEvent.action, ConsentEvent.source)
                               .where(ConsentEvent.member_id == member_id).order_by(ConsentEvent.id)).all()


def test_the_csv_takes_whatsapp_its_number_and_the_source_of_consent(wa_network):
    lee, priya = member(wa_network, LEE), member(wa_network, PRIYA)
    assert lee.channels == ("whatsapp",) and lee.whatsapp is None and lee.whatsapp_number == LEE
    assert lee.whatsapp_opted_in_at is not None and lee.takes_whatsapp
    assert consent_log(wa_network, LEE) == [("whatsapp", "opt_in", "import:signed form 2026-11-02")]
    assert priya.whatsapp == PRIYA_WA and priya.whatsapp_discussion and priya.whatsapp_opted_in_at is None
    assert not priya.takes_whatsapp and consent_log(wa_network, PRIYA) == []


def test_the_csv_refuses_what_cannot_be_right(wa_services):
    rows = (HEADER
            + "A,,a@example.org,UTC,en,tft,member,whatsapp,,\n"  # WhatsApp with no number
            + "B,+821012345681,,UTC,en,tft,member,sms,,by phone call\n"  # consent for a channel not chosen
            + "C,+821012345682,,UTC,en,tft,member,whatsapp,12,\n"  # not a number
            + "D,+821012345683,,UTC,en,tft,member,sms;whatsapp,,\n")  # fine: waits for an opt-in
    with transaction(wa_services.sessions) as session:
        report = import_members(session, rows)
    assert [line for line, _ in report.errors] == [2, 3, 4]
    assert "whatsapp needs a phone" in report.errors[0][1]
    assert "whatsapp_opt_in" in report.errors[1][1]
    assert report.created == 1


def test_relay_members_channels_takes_whatsapp_and_says_it_waits_for_an_opt_in(wa_settings, wa_network, monkeypatch):
    monkeypatch.setenv("RELAY_DATABASE_URL", wa_settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(wa_settings.var_dir))
    monkeypatch.setenv("RELAY_TWILIO_WHATSAPP_FROM", "whatsapp:+14155238886")
    runner = CliRunner()
    kim = "+821012345601"
    result = runner.invoke(main, ["members", "channels", kim, "sms;whatsapp"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"{kim}: sms, whatsapp"
    assert "waiting for the member's opt-in" in result.output
    assert member(wa_network, kim).whatsapp_discussion
    monkeypatch.delenv("RELAY_TWILIO_WHATSAPP_FROM")
    result = runner.invoke(main, ["members", "channels", kim, "whatsapp"])
    assert result.exit_code == 0 and "WhatsApp is off (RELAY_TWILIO_WHATSAPP_FROM is unset)" in result.output
    result = runner.invoke(main, ["members", "channels", kim, "sms;pager"])
    assert result.exit_code != 0 and "sms, email, whatsapp" in result.output


def test_the_api_sets_whatsapp_and_shows_its_consent(wa_network):
    wa_network.settings = wa_network.settings.replace(api_token="t0ken")
    api = create_app(services=wa_network).test_client()
    auth = {"Authorization": "Bearer t0ken"}
    response = api.put(f"/api/v1/members/{PRIYA}/channels", json={"channels": ["email", "whatsapp"]}, headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["channels"] == ["email", "whatsapp"]
    assert (body["whatsapp"], body["whatsapp_opted_in"], body["whatsapp_opted_out"]) == (PRIYA_WA, False, False)
    assert api.get(f"/api/v1/members/{LEE}", headers=auth).get_json()["whatsapp_opted_in"] is True


def test_the_preference_page_records_the_members_own_opt_in(wa_network):
    client = create_app(services=wa_network).test_client()
    priya = member(wa_network, PRIYA)
    page = "/preferences/" + signed_id(wa_network.settings.secret(), "preferences", priya.id)
    text = client.get(page).get_data(as_text=True)
    assert "whatsapp-opt-in" in text and PRIYA_WA in text
    assert client.post(page, data={"whatsapp_opt_in": "on"}).status_code == 200
    priya = member(wa_network, PRIYA)
    assert priya.whatsapp_opted_in_at is not None and priya.takes_whatsapp
    assert consent_log(wa_network, PRIYA) == [("whatsapp", "opt_in", "web:preferences")]
    assert client.post(page, data={"whatsapp_mode": "stop"}).status_code == 200
    assert member(wa_network, PRIYA).whatsapp_opted_out_at is not None
    assert consent_log(wa_network, PRIYA)[-1] == ("whatsapp", "opt_out", "web:preferences")


def test_a_forged_preference_link_records_no_opt_in(wa_network):
    client = create_app(services=wa_network).test_client()
    priya = member(wa_network, PRIYA)
    forged = "/preferences/" + signed_id("not-the-secret", "preferences", priya.id)
    assert client.post(forged, data={"whatsapp_opt_in": "on"}).status_code == 404
    assert member(wa_network, PRIYA).whatsapp_opted_in_at is None


def test_the_console_shows_waiting_for_opt_in_and_the_consent_source(wa_network):
    give_password(wa_network, KIM_EMAIL)
    client = create_app(services=wa_network).test_client()
    sign_in(client, KIM_EMAIL)
    reads_english(client)  # the page's words are what is tested (issue 21: Kim reads Korean)
    page = client.get(f"/console/members/{member(wa_network, PRIYA).id}").get_data(as_text=True)
    assert "waiting for the member&#39;s opt-in" in page or "waiting for the member's opt-in" in page
    page = client.get(f"/console/members/{member(wa_network, LEE).id}").get_data(as_text=True)
    assert "import:signed form 2026-11-02" in page and 'value="whatsapp" checked' in page


def test_the_console_says_when_the_channel_is_off(wa_network):
    wa_network.settings = wa_network.settings.replace(whatsapp_from="")
    give_password(wa_network, KIM_EMAIL)
    client = create_app(services=wa_network).test_client()
    sign_in(client, KIM_EMAIL)
    reads_english(client)  # the page's words are what is tested (issue 21: Kim reads Korean)
    page = client.get(f"/console/members/{member(wa_network, LEE).id}").get_data(as_text=True)
    assert "the channel is off" in page and "RELAY_TWILIO_WHATSAPP_FROM" in page
    assert 'id="whatsapp-off"' in client.get("/console/notices/new").get_data(as_text=True)
