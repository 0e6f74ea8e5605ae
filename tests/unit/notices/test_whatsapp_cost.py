"""The preview and cost estimate cover WhatsApp (issue 19): recipients by country, template or free-form
by each member's 24-hour window now, priced from the table and marked as an estimate; CLI and console."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from click.testing import CliRunner
from sqlalchemy import select

from relay.cli import main
from relay.infra.db import transaction
from relay.model.tables import Member, utcnow
from relay.notices.lifecycle import create_notice
from relay.notices.preview import preview_notice
from tests.console_helpers import KIM as KIM_EMAIL
from tests.console_helpers import give_password, reads_english, sign_in
from tests.whatsapp_fixtures import PRIYA
from webhooks.app import create_app


def draft(services) -> int:
    with transaction(services.sessions) as session:
        return create_notice(session, kind="new_case", case_code="C1", lists=["tft"]).id


def opt_in_priya(services, wrote_ago: timedelta | None) -> None:
    with transaction(services.sessions) as session:
        priya = session.scalar(select(Member).where(Member.phone == PRIYA))
        priya.whatsapp_opted_in_at = utcnow()
        priya.whatsapp_last_inbound_at = utcnow() - wrote_ago if wrote_ago is not None else None


def test_the_preview_counts_whatsapp_by_country_and_window_and_prices_it(wa_network):
    opt_in_priya(wa_network, timedelta(hours=2))  # Priya (India) wrote two hours ago: free-form
    notice_id = draft(wa_network)  # Lee (Korea) never wrote: a template
    with wa_network.sessions() as session:
        preview = preview_notice(session, wa_network.settings, notice_id)
    assert preview.channels["whatsapp"] == 2
    by_country = {line.country: line for line in preview.whatsapp}
    assert (by_country["KR"].templates, by_country["KR"].free_form) == (1, 0)
    assert (by_country["IN"].templates, by_country["IN"].free_form) == (0, 1)
    assert by_country["KR"].cost_usd == Decimal("0.0290") and by_country["IN"].cost_usd == Decimal("0.0050")
    assert preview.whatsapp_cost_usd == Decimal("0.0340")
    assert preview.as_dict()["whatsapp_cost_usd"] == 0.034


def test_the_cli_preview_marks_the_whatsapp_cost_as_an_estimate(wa_settings, wa_network, monkeypatch):
    notice_id = draft(wa_network)
    for name, value in (("DATABASE_URL", wa_settings.database_url), ("BROKER_URL", "memory://"),
                        ("VAR_DIR", str(wa_settings.var_dir)), ("TWILIO_WHATSAPP_FROM", "whatsapp:+14155238886"),
                        ("QUIET_HOURS", "off")):  # the wall clock must not hold the members back (issue 15's preview)
        monkeypatch.setenv(f"RELAY_{name}", value)
    result = CliRunner().invoke(main, ["notice", "preview", str(notice_id)])
    assert result.exit_code == 0, result.output
    assert "WhatsApp: 1" in result.output and "KR  1 recipients: 1 template at $0.0290" in result.output
    assert "estimated WhatsApp cost (an estimate): $0.0290" in result.output
    result = CliRunner().invoke(main, ["notice", "send", str(notice_id)])
    assert result.exit_code == 0, result.output
    assert "4 members, 2 SMS, 1 WhatsApp and 2 emails queued" in result.output


def test_with_whatsapp_off_the_preview_warns(wa_network):
    wa_network.settings = wa_network.settings.replace(whatsapp_from="")
    notice_id = draft(wa_network)
    with wa_network.sessions() as session:
        preview = preview_notice(session, wa_network.settings, notice_id)
    assert any("WhatsApp is off" in w for w in preview.warnings)


def test_the_console_preview_shows_whatsapp(wa_network):
    notice_id = draft(wa_network)
    give_password(wa_network, KIM_EMAIL)
    client = create_app(services=wa_network).test_client()
    sign_in(client, KIM_EMAIL)
    reads_english(client)  # the page's words are what is tested (issue 21: Kim reads Korean)
    page = client.get(f"/console/notices/{notice_id}").get_data(as_text=True)
    assert 'id="preview-whatsapp"' in page and "1 by WhatsApp" in page and "an estimate" in page
