"""Reach in a real headless Chromium (issue 20): gunicorn on a fresh PostgreSQL database and a private
Redis prefix. A reader opens a case in the library (its page image counts them in Redis; the same page
opened by Chromium's own headless user agent is a bot and is not); a coordinator opens the Reach page,
sees the reader, switches the period, and downloads CSVs whose totals are the database's. A screenshot
of the page is kept under var/screenshots/ (a CI artifact)."""
from __future__ import annotations

import csv
import io
import secrets
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select

from relay.access.accounts import set_password
from relay.infra.db import transaction
from relay.library.cases import create_case
from relay.members.directory import find_member, import_members
from relay.model.tables import Delivery, ReaderDay, utcnow
from relay.services import build_services
from tests.conftest import DEMO_CSV, make_settings
from tests.paths import REPO_ROOT

from .browser import chromium  # noqa: F401  (the fixture)
from .processes import Processes, free_port, relay_command, relay_env, wait_for_health
from .test_distributed import E2E_REDIS_DB, _redis_db_url

pytestmark = pytest.mark.e2e

PASSWORD = "browser test password"
COORDINATOR = "jiwon@example.org"
READER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
SCREENSHOT = REPO_ROOT / "var" / "screenshots" / "reach.png"


@pytest.fixture
def site(postgres_only_url, redis_url, processes: Processes, tmp_path):
    broker_url = _redis_db_url(redis_url, E2E_REDIS_DB)
    prefix = f"relay-e2e-{secrets.token_hex(4)}:"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = relay_env(DATABASE_URL=postgres_only_url, BROKER_URL=broker_url, BROKER_PREFIX=prefix,
                    PUBLIC_BASE_URL=base_url, PORT=str(port), VAR_DIR=str(tmp_path / "var"),
                    SECRET_KEY=secrets.token_hex(16))
    web = processes.start("web", relay_command("web", "--port", str(port), "--workers", "2"), env)
    services = build_services(make_settings(tmp_path / "test-var", postgres_only_url))
    broker = redis.Redis.from_url(broker_url)
    try:
        wait_for_health(base_url, web)
        now = utcnow()
        with transaction(services.sessions) as session:
            assert not import_members(session, DEMO_CSV).errors
            set_password(session, find_member(session, COORDINATOR), PASSWORD)
            create_case(session, "Fever and ground-glass opacities")
            for n, (channel, status) in enumerate([("sms", "delivered")] * 5 + [("sms", "failed")] * 2
                                                  + [("email", "delivered")] * 3 + [("email", "opted_out")]):
                session.add(Delivery(dedupe_key=f"browser:{n}", purpose="notice", channel=channel, to_address="x",
                                     body="b", status=status, created_at=now - timedelta(days=n % 3)))
            session.add(Delivery(dedupe_key="browser:old", purpose="notice", channel="sms", to_address="x",
                                 body="b", status="delivered", created_at=now - timedelta(days=200)))
        yield base_url, services
    finally:
        processes.stop_all()
        services.dispose()
        for key in broker.scan_iter(match=f"{prefix}*"):
            broker.delete(key)
        broker.close()


def csv_rows(download) -> list[list[str]]:
    with open(download.path(), encoding="utf-8") as handle:
        return list(csv.reader(io.StringIO(handle.read())))


def test_a_coordinator_reads_reach_switches_the_period_and_downloads_csvs_matching_the_database(site, chromium):
    base_url, services = site
    headless = chromium().new_page()  # Chromium's own "HeadlessChrome" agent: a bot, never counted
    headless.goto(f"{base_url}/library/cases/C1", wait_until="load")
    reader_profile = chromium()
    reader_profile.set_extra_http_headers({"User-Agent": READER_AGENT})
    reader = reader_profile.new_page()
    reader.goto(f"{base_url}/library/cases/C1", wait_until="load")  # loads the page image: one reader
    reader.reload(wait_until="load")  # the same reader again: still one
    with services.sessions() as session:
        assert session.scalar(select(func.sum(ReaderDay.visitors))) == 1

    page = chromium().new_page()
    page.goto(f"{base_url}/console/reach")
    page.fill('form[action="/signin"] input[name=email]', COORDINATOR)
    page.fill('form[action="/signin"] input[name=password]', PASSWORD)
    page.click('form[action="/signin"] button[type=submit]')
    page.wait_for_url(f"{base_url}/console/reach")
    assert page.locator('svg[role="img"]').count() == 8
    # Kim Jiwon's own language is Korean: the page and its charts speak it (the catalogue's words)
    assert page.locator("#chart-readers svg title").first.text_content().startswith("일별 라이브러리 독자")
    page.click("#chart-readers summary")  # the numbers, one click away
    assert page.locator("#chart-readers tfoot td").first.inner_text() == "1"

    page.select_option("#period", "12m")
    page.click("#show")
    page.wait_for_url("**period=12m**")
    today = utcnow().date()
    assert page.locator("#period-shown").inner_text() == f"{today - timedelta(days=364)} – {today}"

    with page.expect_download() as download:
        page.click("#chart-deliveries .csv a")
    rows = csv_rows(download.value)
    header, body = rows[0], rows[1:]
    assert header[0] == "channel" and download.value.suggested_filename.startswith("reach-deliveries-")
    with services.sessions() as session:
        expected = dict(session.execute(select(Delivery.channel, func.count()).group_by(Delivery.channel)).all())
    assert {row[0]: sum(int(cell) for cell in row[1:]) for row in body} == expected == {"sms": 8, "email": 4}
    delivered = header.index("delivered")
    assert {row[0]: int(row[delivered]) for row in body} == {"sms": 6, "email": 3}

    with page.expect_download() as download:
        page.click("#chart-readers .csv a")
    assert sum(int(row[1]) for row in csv_rows(download.value)[1:]) == 1

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
