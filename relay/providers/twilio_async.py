"""Sending SMS from the process's event loop (relay/infra/eventloop.py) with twilio-python's own async
client: `Client(http_client=AsyncTwilioHttpClient)` and `messages.create_async`, over one aiohttp
session with kept-alive connections. twilio builds the request exactly as its synchronous client does
(the same form fields in the same order, the same headers and HTTP Basic auth; the test in
tests/unit/providers/test_twilio_async.py compares the bytes), so what the OpenAPI test validates for
relay/providers/twilio_sms.py holds for this path too; errors go through the same classify_error.

Why twilio's client rather than a hand-written aiohttp POST: the request stays the library's own, and it
measured near raw aiohttp on this machine (docs/scale.md). The aiohttp session is made here (not by
twilio) to give it the sender's timeout and a bound on connections, and the URL is rewritten for
RELAY_TWILIO_API_URL as the synchronous client does."""
from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from relay.model.messages import SendError

TWILIO_API = "https://api.twilio.com"

# The headers of the last answer in this task (TwilioRestException drops them; a 429's Retry-After is there).
_headers: contextvars.ContextVar[Any] = contextvars.ContextVar("twilio_answer_headers", default=None)


class AsyncTwilioClient:
    """twilio's Client over its aiohttp client, made on first use inside the loop that will use it."""

    def __init__(self, account_sid: str, auth_token: str, api_url: str, timeout: float, connections: int):
        self.account_sid, self.auth_token, self.api_url = account_sid, auth_token, api_url
        self.timeout, self.connections = timeout, connections
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self):
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = self._build(), loop
        return self._client

    def _build(self):
        # reason: start-up cost, as in twilio_sms.classify_error (twilio's REST client loads only where SMS go out)
        import aiohttp
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        api_url = self.api_url

        class _HttpClient(AsyncTwilioHttpClient):
            async def request(self, method, url, *args, **kwargs):
                if api_url and url.startswith(TWILIO_API):
                    url = api_url + url[len(TWILIO_API):]
                response = await super().request(method, url, *args, **kwargs)
                _headers.set(response.headers or {})
                return response

        http = _HttpClient(pool_connections=False, timeout=self.timeout)
        http.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.connections),
                                             timeout=aiohttp.ClientTimeout(total=self.timeout))
        return Client(self.account_sid, self.auth_token, http_client=http)

    async def create(self, params: dict) -> tuple[Any, Any]:
        """messages.create_async(**params): (the created message, None) or (None, (exception, headers))."""
        _headers.set(None)
        try:
            return await self.client().messages.create_async(**params), None
        except Exception as exc:  # classified by the caller, with the answer's headers
            return None, (exc, _headers.get() or {})

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()
            self._client = None


def network_error(exc: Exception) -> SendError | None:
    """aiohttp's own failures (refused, reset, timed out) as the synchronous client's requests ones are
    classified: unreachable, worth retrying. None for anything else."""
    import aiohttp

    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)):
        return SendError(f"Twilio unreachable: {type(exc).__name__}: {exc}", code="network", retryable=True)
    return None
