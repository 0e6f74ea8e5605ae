"""Sending Twilio messages from the process's event loop (relay/infra/eventloop.py): one aiohttp POST of
exactly the request twilio-python's `messages.create` sends, over one session of kept-alive connections.

Why hand-written, not twilio's own async client (`create_async`): per message that client went through
six layers of its own (Domain, Version, ClientBase, its aiohttp wrapper with aiohttp-retry's session, a
copy of the form, a MessageInstance with every date of the answer parsed), about a fifth of the bulk
sender's CPU per SMS on this machine (docs/scale.md). What is sent stays twilio's:

- the form fields, in the order twilio writes them (`FIELDS`, from twilio/rest/api/v2010/account/message),
  None left out, lists repeated (MediaUrl), urlencoded as requests and aiohttp both encode them;
- the headers twilio's own Client computes (`Client.get_headers`: User-Agent, X-Twilio-Client,
  Accept-Charset, Content-Type, Accept), asked of it once, with HTTP Basic auth;
- the URL twilio's Client resolves (TWILIO_EDGE / TWILIO_REGION), rewritten for RELAY_TWILIO_API_URL as
  the synchronous client is;
- an answer outside 2xx becomes the exception twilio raises (`Version.exception`, the same parsing of the
  error body), so `classify_error` sees what it sees on the synchronous path; a 2xx answer's sid and
  status are read from its JSON as MessageInstance reads them.

tests/unit/providers/test_twilio_async.py compares the bytes of the requests with twilio-python's (both
its clients) for SMS, MMS, a Messaging Service and WhatsApp; the OpenAPI test validates those requests."""
from __future__ import annotations

import asyncio
import base64
import functools
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

from relay.model.messages import SendError

TWILIO_API = "https://api.twilio.com"

# messages.create's form: (keyword, field), in twilio-python's order; the fields relay uses.
FIELDS = (("to", "To"), ("status_callback", "StatusCallback"), ("content_variables", "ContentVariables"),
          ("from_", "From"), ("messaging_service_sid", "MessagingServiceSid"), ("body", "Body"),
          ("media_url", "MediaUrl"), ("content_sid", "ContentSid"))
_KEYWORDS = frozenset(keyword for keyword, _ in FIELDS)


@functools.lru_cache(maxsize=1024)
def _quoted(value: str) -> str:
    """A form value as urlencode writes it (quote_plus), kept: a broadcast sends the same Body, From and
    StatusCallback thousands of times (issue 18: encoding them was ~4 % of the send loop's CPU)."""
    return quote_plus(value)


def form(params: dict[str, Any]) -> bytes:
    """The urlencoded body twilio-python sends for messages.create(**params): `urlencode` of the pairs
    below (field names are plain letters; a str value is quote_plus'd, anything else as urlencode does)."""
    unknown = set(params) - _KEYWORDS
    if unknown:  # a field this client does not know would be sent in the wrong place, or not at all
        raise TypeError(f"messages.create parameters not supported here: {sorted(unknown)}")
    pairs: list[tuple[str, str]] = []
    for keyword, field in FIELDS:
        value = params.get(keyword)
        if value is None:
            continue
        for item in (value if isinstance(value, (list, tuple)) else (value,)):
            if item is not None:
                pairs.append((field, item))
    if all(isinstance(value, str) for _, value in pairs):
        return "&".join(f"{field}={_quoted(value)}" for field, value in pairs).encode("ascii")
    return urlencode(pairs).encode("ascii")


@dataclass(frozen=True)
class Created:
    """What relay reads of a created message (MessageInstance's sid and status)."""

    sid: str | None
    status: str | None


class AsyncTwilioClient:
    """The Messages endpoint over one aiohttp session, made on first use inside the loop that uses it."""

    def __init__(self, account_sid: str, auth_token: str, api_url: str, timeout: float, connections: int):
        self.account_sid, self.auth_token, self.api_url = account_sid, auth_token, api_url
        self.timeout, self.connections = timeout, connections
        self.path = f"/Accounts/{account_sid}/Messages.json"  # the uri twilio names in its exceptions
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._url, self._headers = self._request_line()

    def _request_line(self) -> tuple[str, dict[str, str]]:
        """(URL, headers) as twilio's Client makes them for messages.create."""
        # reason: start-up cost; twilio's REST client (and aiohttp) load only in a process that sends SMS
        from twilio.rest import Client

        client = Client(self.account_sid, self.auth_token)
        url = client.get_hostname(f"{TWILIO_API}/2010-04-01{self.path}")
        if self.api_url and url.startswith(TWILIO_API):
            url = self.api_url + url[len(TWILIO_API):]
        headers = client.get_headers("POST", {"Content-Type": "application/x-www-form-urlencoded",
                                              "Accept": "application/json"})
        # HTTP Basic as requests and aiohttp write it (latin-1, as both encode credentials)
        credentials = f"{self.account_sid}:{self.auth_token}".encode("latin-1")
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode("ascii")
        return url, headers

    def session(self):
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            import aiohttp  # reason: start-up cost, as above

            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.connections),
                                                  timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._loop = loop
        return self._session

    async def create(self, params: dict) -> tuple[Created | None, Any]:
        """messages.create(**params): (the created message, None) or (None, (exception, answer headers))."""
        body = form(params)
        try:
            async with self.session().post(self._url, data=body, headers=self._headers,
                                           allow_redirects=False) as response:
                status, text, headers = response.status, await response.text(), response.headers
            if 200 <= status < 300:
                payload = json.loads(text) if text else {}
                return Created(payload.get("sid"), payload.get("status")), None
            return None, (self._exception(status, text, headers), headers)
        except Exception as exc:  # classified by the caller
            return None, (exc, {})

    def _exception(self, status: int, text: str, headers) -> Exception:
        from twilio.base.version import Version  # reason: start-up cost, as above
        from twilio.http.response import Response

        return Version.exception("POST", self.path, Response(status, text, headers), "Unable to create record")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def network_error(exc: Exception) -> SendError | None:
    """aiohttp's own failures (refused, reset, timed out) as the synchronous client's requests ones are
    classified: unreachable, worth retrying. None for anything else."""
    import aiohttp

    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)):
        return SendError(f"Twilio unreachable: {type(exc).__name__}: {exc}", code="network", retryable=True)
    return None
