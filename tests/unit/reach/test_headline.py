"""Headline figures (issue 20, item 4): on the library's front page only once an admin publishes them
(audited), as JSON from GET /api/v1/stats for staff tokens, and from `relay stats --month`."""
from __future__ import annotations

import json
from datetime import date

import time_machine
from click.testing import CliRunner
from sqlalchemy import select

from relay.access.api_tokens import create_token
from relay.cli import main
from relay.infra.db import transaction
from relay.members.directory import find_member
from relay.model.tables import AuditEvent, ReaderDay
from relay.reach.rollups import refresh_member_countries
from tests.console_helpers import ADMIN, LEE, csrf, give_password, sign_in
from webhooks.app import create_app

NOW = "2026-11-20T12:00:00Z"


def readers_and_countries(services):
    with transaction(services.sessions) as session:
        refresh_member_countries(session)
        session.add_all([ReaderDay(day=date(2026, 11, 1), visitors=100, members=3),
                         ReaderDay(day=date(2026, 11, 19), visitors=20, members=2),
                         ReaderDay(day=date(2026, 10, 31), visitors=999, members=9)])  # another month


def test_the_front_page_shows_the_figures_only_once_an_admin_publishes_them(network):
    readers_and_countries(network)
    give_password(network, ADMIN, roles="admin;member")
    client = create_app(services=network).test_client()
    with time_machine.travel(NOW, tick=False):
        assert 'id="reach-headline"' not in client.get("/library/").get_data(as_text=True)
        sign_in(client, ADMIN)
        response = client.post("/console/reach/headline", data={"action": "on", "csrf_token": csrf(client)})
        assert response.status_code == 302
        page = client.get("/library/").get_data(as_text=True)
        assert "5 members in 3 countries, 125 readers this month" in page
        client.post("/console/reach/headline", data={"action": "off", "csrf_token": csrf(client)})
        assert 'id="reach-headline"' not in client.get("/library/").get_data(as_text=True)
    with network.sessions() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("reach.%"))
                                       .order_by(AuditEvent.id)))
    assert actions == ["reach.headline_published", "reach.headline_withdrawn"]


def token(services, email: str) -> str:
    with transaction(services.sessions) as session:
        return create_token(session, find_member(session, email))[1]


def test_the_api_gives_the_figures_to_staff(network):
    readers_and_countries(network)
    client = create_app(services=network).test_client()
    staff = {"Authorization": f"Bearer {token(network, 'jiwon@example.org')}"}
    response = client.get("/api/v1/stats?month=2026-11", headers=staff)
    assert response.status_code == 200
    assert response.get_json() == {"month": "2026-11", "members": 5, "countries": 3, "readers": 125,
                                   "visitors": 120, "member_readers": 5, "published": False}
    assert client.get("/api/v1/stats?month=2026-10", headers=staff).get_json()["readers"] == 1008
    bad = client.get("/api/v1/stats?month=November", headers=staff)
    assert bad.status_code == 400 and "YYYY-MM" in bad.get_json()["detail"]
    assert client.get("/api/v1/stats").status_code == 401
    member = {"Authorization": f"Bearer {token(network, LEE)}"}
    assert client.get("/api/v1/stats", headers=member).status_code == 403


def test_relay_stats_prints_a_months_figures(network, monkeypatch):
    readers_and_countries(network)
    settings = network.settings
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()
    result = runner.invoke(main, ["stats", "--month", "2026-11"])
    assert result.exit_code == 0, result.output
    assert "2026-11: 5 members in 3 countries, 125 readers this month (120 visitors, 5 signed-in members" in result.output
    result = runner.invoke(main, ["stats", "--month", "2026-10", "--json"])
    assert json.loads(result.output)["readers"] == 1008
    result = runner.invoke(main, ["stats", "--month", "last"])
    assert result.exit_code == 2 and "YYYY-MM" in result.output
