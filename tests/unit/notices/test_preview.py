"""Notice preview: recipients per channel and country, SMS text per language with GSM-7/UCS-2
segments, cost from the per-country price table, and the email each language gets."""
from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from relay.infra.db import transaction
from relay.infra.settings import Settings
from relay.members import consent
from relay.members.directory import set_channels
from relay.model.tables import Delivery, Member
from relay.notices.lifecycle import create_notice, new_case_notice
from relay.notices.preview import PriceTableError, load_prices, preview_notice
from relay.render.segments import count_segments
from tests.conftest import run_worker

KIM, LEE, ALICE = "+821012345601", "+821012345602", "+33612345604"
PRICES = "country,price_per_segment_usd\ndefault,0.05\nKR,0.04\nUS,0.01\n"


@pytest.fixture
def priced(network, tmp_path):
    table = tmp_path / "prices.csv"
    table.write_text(PRICES)
    network.settings = network.settings.replace(sms_prices=table)
    return network


def draft(services, **fields) -> int:
    fields.setdefault("lists", ["tft"])
    with transaction(services.sessions) as session:
        return create_notice(session, **fields).id


def preview(services, notice_id):
    with services.sessions() as session:
        return preview_notice(session, services.settings, notice_id)


def test_counts_per_channel_and_country_and_cost(priced):
    notice_id = draft(priced, kind="guideline", title="Masks in CT rooms", body="FFP2 for every scan")
    p = preview(priced, notice_id)
    assert (p.recipients, p.channels) == (5, {"sms": 5, "email": 5})
    assert p.link == "https://relay.example.org/library/" and p.status == "draft"
    sms = {s.language: s for s in p.sms}
    assert (sms["en"].recipients, sms["ko"].recipients) == (4, 1)
    assert sms["en"].text == ("relay: guideline: Masks in CT rooms\nFFP2 for every scan\n"
                              "https://relay.example.org/library/\nSTOP to opt out.")
    assert (sms["en"].encoding, sms["en"].characters, sms["en"].segments) == ("GSM-7", len(sms["en"].text), 1)
    assert sms["ko"].encoding == "UCS-2" and sms["ko"].segments == 2  # Korean: 70 per single part, 67 per part
    lines = {c.country: c for c in p.countries}
    assert {k: (v.recipients, v.segments) for k, v in lines.items()} == {"KR": (3, 4), "FR": (1, 1), "US": (1, 1)}
    assert lines["KR"].price_per_segment_usd == Decimal("0.04") and lines["KR"].cost_usd == Decimal("0.16")
    assert lines["FR"].price_per_segment_usd == Decimal("0.05")  # not listed: the default row
    assert p.estimated_cost_usd == Decimal("0.16") + Decimal("0.05") + Decimal("0.01")
    assert p.as_dict()["estimated_cost_usd"] == pytest.approx(0.22)
    assert p.warnings == ()


def test_korean_ucs2_segments_and_emoji(priced):
    body = "환자 3명 추가 확인 😷 " * 8  # UCS-2, with characters outside the BMP taking two units
    p = preview(priced, draft(priced, kind="announcement", title="공지", body=body, lists=["us"]))
    (only,) = p.sms
    assert only.language == "en" and only.encoding == "UCS-2"
    expected = count_segments(only.text)
    assert (only.characters, only.segments) == (expected.characters, expected.segments)
    assert only.segments == 3 and expected.units == only.characters + 8  # 181 units: 3 parts of 67
    assert p.countries[0].country == "US" and p.estimated_cost_usd == Decimal("0.03")


def test_email_rendering_per_language(priced):
    p = preview(priced, draft(priced, kind="guideline", title="Masks in CT rooms", body="FFP2 for every scan"))
    email = {e.language: e for e in p.email}
    assert email["en"].subject == "Guideline: Masks in CT rooms" and email["en"].recipients == 4
    assert email["en"].sample_to == "Lee Minho <minho@example.org>"
    assert "FFP2 for every scan" in email["en"].text
    assert "Library: https://relay.example.org/library/" in email["en"].text
    assert email["ko"].subject == "지침: Masks in CT rooms" and email["ko"].sample_to.endswith("<jiwon@example.org>")


def test_email_of_a_case_notice_matches_what_is_sent(priced, mail):
    notice_id = draft(priced, kind="new_case", case_code="C1")
    p = preview(priced, notice_id)
    assert {e.subject for e in p.email} == {"[C1] Fever and ground-glass opacities"}
    from relay.notices.lifecycle import send_notice

    send_notice(priced, notice_id)
    run_worker(priced)
    from email import message_from_bytes, policy

    sent = next(message_from_bytes(m.raw, policy=policy.default) for m in mail.sent if m.to == "minho@example.org")
    english = next(e for e in p.email if e.language == "en")
    assert sent["Subject"] == english.subject
    text = sent.get_body(("plain",)).get_content()
    assert text.replace("\r\n", "\n").strip() == english.text.strip()


def test_choices_and_opt_outs_change_the_counts_and_nothing_is_written(priced):
    with transaction(priced.sessions) as session:
        set_channels(session.scalar(select(Member).where(Member.phone == LEE)), ["email"])
        consent.opt_out_sms(session, session.scalar(select(Member).where(Member.phone == ALICE)), source="test")
    p = preview(priced, draft(priced, kind="announcement", title="Journal club", channels="sms"))
    assert (p.recipients, p.channels) == (3, {"sms": 3, "email": 0})
    assert {c.country: c.recipients for c in p.countries} == {"KR": 2, "US": 1}
    assert p.email == ()
    with priced.sessions() as session:
        assert session.scalars(select(Delivery)).first() is None


def test_a_correction_previews_the_original_recipients(priced):
    original = new_case_notice(priced, "C1", ["us"])
    run_worker(priced)
    correction = draft(priced, kind="correction", body="45, not 54", corrects_notice_id=original.notice_id, lists=[])
    p = preview(priced, correction)
    assert (p.recipients, p.channels) == (1, {"sms": 1, "email": 1})
    assert [e.subject for e in p.email] == ["[C1] Correction: Fever and ground-glass opacities"]


def test_without_a_price_table_the_cost_is_unknown(network, tmp_path):
    network.settings = network.settings.replace(sms_prices=tmp_path / "missing.csv")
    p = preview(network, draft(network, kind="announcement", title="x"))
    assert p.estimated_cost_usd is None and p.countries[0].cost_usd is None
    assert "no SMS price table" in p.warnings[0] and "RELAY_SMS_PRICES" in p.warnings[0]


def test_price_tables(tmp_path):
    table = tmp_path / "p.csv"
    table.write_text("# a comment\ncountry,price_per_segment_usd\nkr,0.04\nDefault,0.07\n")
    assert load_prices(table) == {"KR": Decimal("0.04"), "default": Decimal("0.07")}
    table.write_text("country,price\nKR,0.04\n")
    with pytest.raises(PriceTableError, match="header"):
        load_prices(table)
    table.write_text("country,price_per_segment_usd\nKR,cheap\n")
    with pytest.raises(PriceTableError, match="line 2"):
        load_prices(table)
    shipped = load_prices(Settings().sms_prices)  # the default table in config/
    assert "default" in shipped and "KR" in shipped
    assert Settings.from_env({"RELAY_SMS_PRICES": str(table)}).sms_prices == table


def test_the_preview_counts_only_what_would_go_now(priced, settings, monkeypatch):
    """Issue 15, item 2: with Lee's SMS paused, recipients, segments and cost leave Lee's SMS out (sending
    queues 4 SMS, not 5) and show it apart as held back — in the core, the CLI, the console and the API."""
    from datetime import timedelta

    from click.testing import CliRunner

    from relay.cli import main
    from relay.members import ladder
    from relay.notices.lifecycle import send_notice
    from tests.console_helpers import KIM, give_password, reads_english, sign_in
    from webhooks.app import create_app

    with transaction(priced.sessions) as session:
        lee = session.scalar(select(Member).where(Member.phone == LEE))
        ladder.pause(session, lee, "sms", timedelta(hours=24), "test")
    notice_id = draft(priced, kind="guideline", title="Masks in CT rooms", body="FFP2 for every scan")
    p = preview(priced, notice_id)
    assert (p.recipients, p.channels) == (5, {"sms": 4, "email": 5})  # Lee still gets the email
    assert {c.country: (c.recipients, c.segments) for c in p.countries} == {"KR": (2, 3), "FR": (1, 1),
                                                                            "US": (1, 1)}
    assert {s.language: s.recipients for s in p.sms} == {"en": 3, "ko": 1}
    assert p.estimated_cost_usd == Decimal("0.04") * 3 + Decimal("0.05") + Decimal("0.01")
    assert (p.held_back, p.held_back_channels, p.waiting) == (1, {"sms": 1, "email": 0}, 0)
    assert p.as_dict()["held_back_channels"] == {"sms": 1, "email": 0}

    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("RELAY_SMS_PRICES", str(priced.settings.sms_prices))
    monkeypatch.setenv("RELAY_QUIET_HOURS", "off")
    output = CliRunner().invoke(main, ["notice", "preview", str(notice_id)]).output
    assert "recipients now: 5 members; 4 SMS, 5 emails" in output
    assert "held back by members' preferences (not sent): 1 SMS, 0 emails" in output
    assert "KR  2 recipients, 3 segments" in output and "estimated SMS cost: $0.1800" in output

    priced.settings = priced.settings.replace(api_token="t0ken")
    app = create_app(services=priced)
    body = app.test_client().post(f"/api/v1/notices/{notice_id}/preview",
                                  headers={"Authorization": "Bearer t0ken"}).get_json()
    assert body["channels"] == {"sms": 4, "email": 5} and body["held_back"] == 1
    assert body["estimated_cost_usd"] == pytest.approx(0.18)
    give_password(priced, KIM)
    client = app.test_client()
    sign_in(client, KIM)
    reads_english(client)  # the page's words are what is tested (issue 21: Kim reads Korean)
    page = client.get(f"/console/notices/{notice_id}").get_data(as_text=True)
    assert "4 by SMS, 5 by email" in page and 'id="preview-held-back"' in page and "$0.1800" in page

    result = send_notice(priced, notice_id)
    assert (result.recipients, result.sms, result.emails) == (5, 4, 5)  # what the preview said
