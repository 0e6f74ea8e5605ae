"""MMS pictures: a member's SMS reply that carries media (Twilio's NumMedia, MediaUrlN,
MediaContentTypeN) files each picture under the case the message was threaded to.

Processing the message writes one pending CaseImage per (inbound event, media index) — unique, so
processing twice files nothing twice — and a worker fetches each one afterwards
(fetch_case_image): with the account's credentials (HTTP basic auth, account SID + auth token),
retried with backoff on network errors, 5xx and 429, and on a final failure the error is kept on
the row, which the case page shows as "image could not be fetched".

SSRF guard: a media URL is fetched only from Twilio's API (RELAY_TWILIO_API_URL when set, else
https://api.twilio.com; a URL on api.twilio.com is pointed at RELAY_TWILIO_API_URL, as for sending)
and only under /2010-04-01/Accounts/<our account>/. Twilio answers with a redirect to its media
CDN; redirects are followed (at most MAX_REDIRECTS) only to https URLs on a host name (not an IP
address in any spelling — 127.1, 2130706433, 0x7f.1 — nor localhost) whose every resolved address
is public (not loopback, private, link-local, multicast, reserved or unspecified); redirects within
the configured API origin are followed as they are (that is how tests reach the local stand-in). The
credentials are sent to the API alone. Anything else is refused and recorded on the row.

The name is resolved once, by the check, and the request connects to the checked address (TLS still
verifies the certificate for the name), so a second DNS answer (rebinding) is never used."""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
from contextlib import ExitStack
from dataclasses import dataclass
from typing import cast
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import requests.adapters

from relay.guard import kind_names
from relay.infra.db import transaction
from relay.library.images import file_fetched, held_kinds
from relay.model.tables import Case, CaseImage, Member, Post
from relay.outbound.fanout import plan
from relay.outbound.queueing import dispatch_deliveries
from relay.render import i18n
from relay.render.texts import render_sms

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
TWILIO_API = "https://api.twilio.com"
TIMEOUT = (5, 30)


class MediaRefused(ValueError):
    """A media URL relay will not fetch (not Twilio's API); permanent."""


class FetchError(Exception):
    def __init__(self, message: str, retryable: bool):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class FetchResult:
    image_id: int
    status: str  # stored | failed | duplicate | retry | skipped
    retry_in: float | None = None


def backoff(attempt: int) -> float:
    """10 s, 20 s, 40 s, ... at most 10 minutes."""
    return float(min(600, 10 * 2 ** max(0, attempt - 1)))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def checked_url(settings, url: str) -> str:
    """The URL to fetch, or MediaRefused: only Twilio's API, under our account."""
    api = settings.twilio_api_base
    if settings.twilio_api_url and url.startswith(TWILIO_API + "/"):
        url = api + url[len(TWILIO_API):]
    try:
        same = _origin(url) == _origin(api)
        path = urlsplit(url).path
    except ValueError:
        raise MediaRefused("the media URL cannot be read") from None
    if not same:
        raise MediaRefused(f"media is fetched only from {api}, not {urlsplit(url).netloc or url[:80]!r}")
    prefix = "/2010-04-01/Accounts/"
    if settings.twilio_account_sid:
        prefix += settings.twilio_account_sid + "/"
    if not path.startswith(prefix) or ".." in path:
        raise MediaRefused(f"the media URL is not under {prefix}")
    return url


# the last label of a host written as a number (127.1, 2130706433, 0x7f.1, 0177.0.0.1): never a name
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|\d+)", re.IGNORECASE)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or not ip.is_global)


def check_redirect(url: str) -> tuple[str | None, str | None]:
    """(why a redirect target off Twilio's API is not followed, None) or (None, the checked address to
    connect to): https, a host name (no address in any spelling, no localhost, no credentials) whose
    every resolved address is public. Raises a retryable FetchError while the resolver is down."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port or 443
    except ValueError:
        return "the URL cannot be read", None
    if parts.scheme != "https":
        return f"{parts.scheme or 'no'} scheme (https only)", None
    if not host or host == "localhost" or host.endswith(".localhost"):
        return "a local host", None
    if ":" in host or _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        return "an address, not a host name", None
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL", None
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # the resolver is down for now: try again later
            raise FetchError(f"cannot resolve {host!r} now ({exc})", retryable=True) from None
        return f"the name does not resolve ({exc})", None
    except (OSError, UnicodeError) as exc:
        return f"the name does not resolve ({exc})", None
    # the resolver's order, once each; typeshed allows an (int, bytes) sockaddr (IPv6 without IPv6 support), but
    # an AF_INET or AF_INET6 answer's is (host, port, ...) with the address as a str
    addresses = list(dict.fromkeys(cast(str, info[4][0]) for info in found))
    if not addresses:
        return "the name does not resolve", None
    private = [a for a in addresses if not _public(a)]
    if private:
        return f"it resolves to a non-public address ({', '.join(private)})", None
    return None, addresses[0]


def redirect_refusal(url: str) -> str | None:
    """Why a redirect target off Twilio's API is not followed, or None when it may be."""
    return check_redirect(url)[0]


class _PinnedAdapter(requests.adapters.HTTPAdapter):
    """Connects to the address the guard checked instead of resolving the name again (a second DNS
    answer — rebinding — is never used), while TLS still sends SNI for the host name and verifies the
    certificate against it."""

    def __init__(self, host: str):
        self._host = host
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = self._host
        kwargs["assert_hostname"] = self._host
        super().init_poolmanager(*args, **kwargs)


def _pinned_get(stack: ExitStack, url: str, address: str) -> requests.Response:
    """GET an https URL off the API from the checked address (see _PinnedAdapter)."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    pinned = stack.enter_context(requests.Session())
    assert parts.hostname is not None  # check_redirect gives an address only for a URL with a host name
    pinned.mount("https://", _PinnedAdapter(parts.hostname))
    return pinned.get(urlunsplit(parts._replace(netloc=netloc)), headers={"Host": parts.netloc}, timeout=TIMEOUT,
                      stream=True, allow_redirects=False)


def download(settings, url: str, session: requests.Session | None = None) -> bytes:
    """GET the media (following only safe redirects), at most RELAY_MAX_IMAGE_BYTES."""
    if session is None:
        with requests.Session() as own:
            return download(settings, url, own)
    http = session
    auth = ((settings.twilio_account_sid, settings.twilio_auth_token)
            if settings.twilio_account_sid and settings.twilio_auth_token else None)
    api_origin = _origin(settings.twilio_api_base)
    with ExitStack() as stack:
        return _follow(settings, http, stack, url, auth, api_origin)


def _follow(settings, http: requests.Session, stack: ExitStack, url: str, auth, api_origin) -> bytes:
    address = None  # off the API: the address the guard checked, connected to as it is
    for _ in range(MAX_REDIRECTS + 1):
        try:
            if address is None:  # the API (the first URL is checked_url's): with the credentials
                response = http.get(url, auth=auth, timeout=TIMEOUT, stream=True, allow_redirects=False)
            else:
                response = _pinned_get(stack, url, address)
        except requests.RequestException as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}", retryable=True) from None
        with response:
            if response.is_redirect:
                target = urljoin(url, response.headers.get("Location", ""))
                refusal, address = (None, None) if _origin(target) == api_origin else check_redirect(target)
                if refusal:
                    raise FetchError(f"refused a redirect to {urlsplit(target).netloc!r}: {refusal}",
                                     retryable=False)
                url = target
                continue
            if response.status_code != 200:
                retryable = response.status_code >= 500 or response.status_code in (408, 429)
                raise FetchError(f"HTTP {response.status_code} from {urlsplit(url).netloc}", retryable=retryable)
            data = bytearray()
            try:
                for chunk in response.iter_content(64 * 1024):
                    data.extend(chunk)
                    if len(data) > settings.max_image_bytes:
                        raise FetchError(f"the media is larger than {settings.max_image_bytes:,} bytes",
                                         retryable=False)
            except requests.RequestException as exc:
                raise FetchError(f"{type(exc).__name__}: {exc}", retryable=True) from None
            return bytes(data)
    raise FetchError("too many redirects", retryable=False)


def _fail(services, image_id: int, error: str) -> FetchResult:
    with transaction(services.sessions) as session:
        image = session.get(CaseImage, image_id, with_for_update=True)
        if image is None or image.status != "pending":
            return FetchResult(image_id, "skipped")
        image.status, image.error = "failed", error[:2000]
    log.warning("mms image %s: not fetched: %s", image_id, error)
    return FetchResult(image_id, "failed")


def fetch_case_image(services, image_id: int, http: requests.Session | None = None) -> FetchResult:
    """One attempt at fetching a pending MMS image. Idempotent: anything but a pending row is left
    alone. Returns retry (with a delay) while attempts remain, else records the failure."""
    settings = services.settings
    with transaction(services.sessions) as session:
        image = session.get(CaseImage, image_id, with_for_update=True)
        if image is None or image.status != "pending":
            return FetchResult(image_id, "skipped")
        image.attempts += 1  # counted before the network call, so a crash counts too
        attempts, url = image.attempts, image.source_url
    try:
        data = download(settings, checked_url(settings, url), http)
    except MediaRefused as exc:
        return _fail(services, image_id, str(exc))
    except FetchError as exc:
        if exc.retryable and attempts < settings.media_fetch_attempts:
            log.info("mms image %s: attempt %s failed (%s), retrying", image_id, attempts, exc)
            return FetchResult(image_id, "retry", backoff(attempts))
        return _fail(services, image_id, f"{exc} (after {attempts} attempt{'s' if attempts > 1 else ''})")
    told: list[int] = []
    with transaction(services.sessions) as session:
        image = session.get(CaseImage, image_id, with_for_update=True)
        if image is None or image.status != "pending":
            return FetchResult(image_id, "skipped")
        file_fetched(session, settings, image, data)
        status = image.status
        if status == "held":
            told = _tell_author(session, settings, image)
    dispatch_deliveries(services, told)
    log.info("mms image %s: %s", image_id, status)
    return FetchResult(image_id, status)


def _tell_author(session, settings, image: CaseImage) -> list[int]:
    """Issue 16: one SMS to the author of the post a held picture came with, in their language: the picture is
    held for the coordinators, with the kinds found (never a value). Its dedupe key makes it once per picture."""
    post = session.get(Post, image.post_id) if image.post_id else None
    author = session.get(Member, post.author_id) if post is not None and post.author_id else None
    case = session.get(Case, image.case_id)
    if author is None or not author.phone or case is None:
        return []
    kinds = kind_names(held_kinds(image), i18n.translator(author.language).gettext)
    body = render_sms(settings.templates_dir, "guard_image_held", author.language, network=settings.network_name,
                      code=case.code, kinds=kinds)
    return plan(session, [{"dedupe_key": f"guard-image-held:image:{image.id}", "purpose": "guard_image_held",
                           "post_id": None, "case_id": case.id, "member_id": author.id, "channel": "sms",
                           "to_address": author.phone, "body": body}])
