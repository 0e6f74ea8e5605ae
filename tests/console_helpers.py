"""Signing in through the real forms in Flask test clients (shared by the console and authorisation tests)."""
from __future__ import annotations

import re

from relay.access.accounts import set_password
from relay.infra.db import transaction
from relay.members.directory import find_member

PASSWORD = "correct horse battery"
KIM, LEE = "jiwon@example.org", "minho@example.org"  # coordinator, member (tests/conftest.py DEMO_CSV)
ADMIN = "ben@example.org"

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def give_password(services, email: str, password: str = PASSWORD, roles: str | None = None) -> None:
    with transaction(services.sessions) as session:
        member = find_member(session, email)
        if roles:
            member.roles = roles
        set_password(session, member, password)


def token_from(client, path: str = "/signin") -> str:
    page = client.get(path).get_data(as_text=True)
    match = _TOKEN.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client, email: str, password: str = PASSWORD):
    token = token_from(client, "/signin")
    response = client.post("/signin", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def csrf(client) -> str:
    """A valid token for the client's current session."""
    return token_from(client, "/signin")


def reads_english(client):
    """The client's pages in English whoever signs in (Kim Jiwon's own language is Korean, issue 21): the
    language switch's cookie, for tests about something else than the language."""
    client.set_cookie("relay_lang", "en")
    return client
