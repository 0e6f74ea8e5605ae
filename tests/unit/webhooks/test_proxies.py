"""Behind a proxy (issue 13, item 7): X-Forwarded-For is believed only from RELAY_TRUSTED_PROXIES, so
per-address sign-in limits count each real client, and a forged header from anyone else is ignored;
failed sign-ins are also limited per account; and the limits fall back to memory when Redis is down,
so a coordinator can still sign in and press hold."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from relay.infra.dispatch import RecordingDispatcher
from relay.infra.settings import Settings, SettingsError
from relay.outbound import hold
from relay.services import build_services
from tests.conftest import _empty_tables
from tests.console_helpers import KIM, LEE, PASSWORD, csrf, give_password
from webhooks.app import create_app
from webhooks.proxies import TrustedProxies

PROXY = "10.0.0.7"


@pytest.fixture
def database_url(sqlite_url):
    """Addresses and limits do not depend on the database: SQLite only."""
    yield sqlite_url
    _empty_tables(sqlite_url)


def seen_by_app(trusted: tuple[str, ...], remote: str, forwarded: str | None) -> str:
    """The REMOTE_ADDR the application sees behind TrustedProxies."""
    seen = {}

    def app(environ, start_response):
        seen["addr"] = environ["REMOTE_ADDR"]
        start_response("200 OK", [])
        return [b""]

    environ = {"REMOTE_ADDR": remote, "REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    TrustedProxies(app, trusted)(environ, lambda *a: None)
    return seen["addr"]


@pytest.mark.parametrize("trusted,remote,forwarded,client", [
    (("10.0.0.0/8",), PROXY, "198.51.100.4", "198.51.100.4"),  # one trusted proxy
    (("10.0.0.0/8",), PROXY, "6.6.6.6, 198.51.100.4", "198.51.100.4"),  # a forged left part is ignored
    (("10.0.0.0/8",), PROXY, "198.51.100.4, 10.0.0.9", "198.51.100.4"),  # a chain of trusted proxies
    (("10.0.0.0/8",), "203.0.113.5", "198.51.100.4", "203.0.113.5"),  # an untrusted peer: header ignored
    (("10.0.0.0/8",), PROXY, None, PROXY),
    (("10.0.0.0/8",), PROXY, "not an address", "not an address"),  # werkzeug's value; limits key on it alone
    (("127.0.0.1/32", "::1/128"), "::ffff:127.0.0.1", "198.51.100.4", "198.51.100.4"),
    (("2",), "203.0.113.5", "6.6.6.6, 198.51.100.4, 10.0.0.9", "198.51.100.4"),  # a hop count
])
def test_forwarded_for_is_believed_only_from_trusted_proxies(trusted, remote, forwarded, client):
    assert seen_by_app(trusted, remote, forwarded) == client


def test_trusted_proxies_setting():
    assert Settings.from_env({}).trusted_proxies == ()
    assert Settings.from_env({"RELAY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"}).trusted_proxies == (
        "10.0.0.0/8", "127.0.0.1/32")
    assert Settings.from_env({"RELAY_TRUSTED_PROXIES": "1"}).trusted_proxies == ("1",)
    with pytest.raises(SettingsError, match="RELAY_TRUSTED_PROXIES"):
        Settings.from_env({"RELAY_TRUSTED_PROXIES": "10.0.0.0/8, proxy.example"})


def attempt(client, email: str, password: str, remote: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    environ = {"REMOTE_ADDR": remote}
    page = client.get("/signin", environ_base=environ, headers=headers).get_data(as_text=True)
    import re

    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/signin", data={"email": email, "password": password, "csrf_token": token},
                       environ_base=environ, headers=headers).status_code


def test_behind_a_trusted_proxy_each_client_has_its_own_sign_in_limit(network):
    give_password(network, LEE)
    network.settings = network.settings.replace(signin_rate_limit="3/minute", trusted_proxies=("10.0.0.0/8",))
    app = create_app(services=network)
    mallory, lee = app.test_client(), app.test_client()
    codes = [attempt(mallory, KIM, "wrong wrong wrong", PROXY, "203.0.113.66") for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert attempt(lee, LEE, PASSWORD, PROXY, "198.51.100.4") == 302  # another client through the same proxy


def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(network):
    give_password(network, LEE)
    network.settings = network.settings.replace(signin_rate_limit="3/minute", trusted_proxies=("10.0.0.0/8",))
    client = create_app(services=network).test_client()
    codes = [attempt(client, KIM, "wrong wrong wrong", "203.0.113.66", f"198.51.100.{n}") for n in range(4)]
    assert codes == [401, 401, 401, 429]  # a new X-Forwarded-For each time does not reset the count


def test_failed_sign_ins_are_limited_per_account_whatever_the_address(network):
    give_password(network, KIM)
    give_password(network, LEE)
    network.settings = network.settings.replace(signin_rate_limit="100/minute", signin_account_limit="3/minute")
    client = create_app(services=network).test_client()
    codes = [attempt(client, f" {KIM.upper()} ", "wrong wrong wrong", f"203.0.113.{n}") for n in range(3)]
    assert codes == [401, 401, 401]
    assert attempt(client, KIM, PASSWORD, "198.51.100.9") == 429  # locked for now, even with the password
    assert attempt(client, LEE, PASSWORD, "203.0.113.1") == 302  # other accounts, same addresses: fine


def test_sign_in_and_hold_work_while_redis_is_down(network, caplog):
    give_password(network, KIM)
    closed = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings = network.settings.replace(broker_url=closed, signin_rate_limit="3/minute")
    services = build_services(settings, engine=network.engine, dispatcher=RecordingDispatcher(),
                              senders=network.senders)
    client = create_app(services=services).test_client()
    assert attempt(client, KIM, "wrong wrong wrong", "203.0.113.1") == 401
    assert attempt(client, KIM, PASSWORD, "203.0.113.1") == 302
    response = client.post("/console/hold", data={"action": "on", "reason": "redis drill", "csrf_token": csrf(client)},
                           environ_base={"REMOTE_ADDR": "203.0.113.1"})
    assert response.status_code == 302, response.get_data(as_text=True)
    with network.sessions() as session:
        assert hold.is_on(session)
    # the limits still count, in memory
    other = create_app(services=services).test_client()
    codes = [attempt(other, LEE, "wrong wrong wrong", "203.0.113.2") for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert "falling back to in-memory storage" in caplog.text


def test_the_recorded_consent_address_is_the_client_behind_a_trusted_proxy(network):
    from relay.model.tables import DigestSubscription

    network.settings = network.settings.replace(trusted_proxies=("10.0.0.0/8",))
    client = create_app(services=network).test_client()
    for email, remote, forwarded in (("a@example.net", PROXY, "198.51.100.4"),
                                     ("b@example.net", "203.0.113.5", "198.51.100.4")):
        response = client.post("/digest/subscribe", data={"email": email, "frequency": "weekly",
                                                         "timezone": "UTC", "hour": "6"},
                               environ_base={"REMOTE_ADDR": remote}, headers={"X-Forwarded-For": forwarded})
        assert response.status_code == 200, response.get_data(as_text=True)
    with network.sessions() as session:
        found = dict(session.execute(select(DigestSubscription.address, DigestSubscription.consent_ip)).all())
    assert found == {"a@example.net": "198.51.100.4", "b@example.net": "203.0.113.5"}
