"""A member's channel choice, by CLI and API, and the coordinator's view and undo of bounces."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from relay.cli import main
from relay.infra.db import transaction
from relay.model.tables import Member
from tests.helpers import member
from webhooks.app import create_app

LEE = "+821012345602"


@pytest.fixture
def api(network):
    network.settings = network.settings.replace(api_token="t0ken")
    return create_app(services=network).test_client()


AUTH = {"Authorization": "Bearer t0ken"}


def test_api_sets_channels(api, network):
    response = api.put(f"/api/v1/members/{LEE}/channels", json={"channels": ["email"]}, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["channels"] == ["email"]
    lee = member(network, LEE)
    assert (lee.sms_discussion, lee.email_discussion) == (False, True)
    assert api.get("/api/v1/members/minho@example.org", headers=AUTH).get_json()["channels"] == ["email"]


@pytest.mark.parametrize("body,status", [
    ({"channels": ["fax"]}, 422), ({"channels": "sms"}, 400), (None, 400),
])
def test_api_refuses_bad_input(api, body, status):
    response = api.put(f"/api/v1/members/{LEE}/channels", json=body, headers=AUTH)
    assert response.status_code == status
    assert response.get_json()["detail"]


def test_api_needs_the_token(api, network):
    assert api.put(f"/api/v1/members/{LEE}/channels", json={"channels": []}).status_code == 401
    assert api.put(f"/api/v1/members/{LEE}/channels", json={"channels": []},
                   headers={"Authorization": "Bearer nope"}).status_code == 401
    assert api.get("/api/v1/members/999", headers=AUTH).status_code == 404


def test_without_the_service_token_it_is_simply_not_accepted(network):
    """RELAY_API_TOKEN empty: no shared token exists, so none is accepted (members' tokens still are)."""
    client = create_app(services=network).test_client()
    assert client.get(f"/api/v1/members/{LEE}").status_code == 401
    assert client.get(f"/api/v1/members/{LEE}", headers={"Authorization": "Bearer "}).status_code == 401


def test_cli_channels_and_bounces(settings, network, monkeypatch):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()
    result = runner.invoke(main, ["members", "channels", LEE, "sms;email"])
    assert result.exit_code == 0 and result.output.strip() == f"{LEE}: sms, email"
    result = runner.invoke(main, ["members", "channels", "nobody@example.org", "sms"])
    assert result.exit_code != 0 and "no member" in result.output
    with transaction(network.sessions) as session:
        lee = session.get(Member, member(network, LEE).id)
        lee.email_hard_bounces = 3
        from relay.model.tables import utcnow

        lee.email_suspended_at = utcnow()
    result = runner.invoke(main, ["members", "bounces"])
    assert "minho@example.org" in result.output and "suspended" in result.output
    result = runner.invoke(main, ["members", "bounces", LEE, "--reset"])
    assert result.exit_code == 0 and "email resumed" in result.output
    assert member(network, LEE).email_suspended_at is None


def test_cli_bounces_says_when_there_is_nothing_and_reset_needs_who(settings, network, monkeypatch):
    """Issue 15, item 7: an empty list says so; --reset without WHO is an error (exit 2), not a silent 0."""
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()
    result = runner.invoke(main, ["members", "bounces"])
    assert result.exit_code == 0 and result.output.strip() == "no member has a hard email bounce"
    result = runner.invoke(main, ["members", "bounces", LEE])
    assert result.exit_code == 0 and result.output.strip() == "no bounces for minho@example.org"
    result = runner.invoke(main, ["members", "bounces", "--reset"])
    assert result.exit_code == 2 and "--reset needs WHO" in result.output
    with transaction(network.sessions) as session:
        session.get(Member, member(network, LEE).id).email_hard_bounces = 1
    result = runner.invoke(main, ["members", "bounces"])
    assert "1 hard bounce, receiving" in result.output  # issue 15, item 10: no "1 hard bounces"
