"""Believing X-Forwarded-For only from the proxies relay is told to trust (RELAY_TRUSTED_PROXIES).

Behind a TLS proxy every request comes from the proxy's address, so per-address rate limits would
count every member together (ten bad sign-ins would lock out every coordinator) and the recorded
consent address would be the proxy's. werkzeug's ProxyFix reads the client from X-Forwarded-For but
believes whoever sends it; this middleware applies it only when the immediate peer (REMOTE_ADDR) is
one of the configured proxies, and then takes the nearest address that is not itself a trusted
proxy (so a chain of trusted proxies works and a forged left part of the header is ignored).
A bare number instead of networks ("1") trusts that many hops from any peer: only for a web port
that nothing but the proxy can reach. Only X-Forwarded-For is read: the scheme and host stay those of
RELAY_PUBLIC_BASE_URL (the Twilio signature check depends on it)."""
from __future__ import annotations

import ipaddress
import logging

from werkzeug.middleware.proxy_fix import ProxyFix

log = logging.getLogger("relay.web.proxies")


def _address(text: str | None):
    try:
        return ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None


class TrustedProxies:
    """WSGI middleware: ProxyFix(x_for=N) for requests whose peer is a trusted proxy."""

    def __init__(self, app, trusted: tuple[str, ...]):
        self.app = app
        self.hops = int(trusted[0]) if len(trusted) == 1 and trusted[0].isdigit() else 0
        self.networks = () if self.hops else tuple(ipaddress.ip_network(t, strict=False) for t in trusted)
        self._fixes: dict[int, ProxyFix] = {}

    def trusted(self, text: str | None) -> bool:
        address = _address(text)
        if address is None:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def hops_for(self, environ) -> int:
        """How many X-Forwarded-For entries to walk back (0: believe none of it)."""
        if self.hops:
            return self.hops
        if not self.trusted(environ.get("REMOTE_ADDR")):
            return 0
        forwarded = [part.strip() for part in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        hops = 1
        while hops < len(forwarded) and self.trusted(forwarded[-hops]):
            hops += 1
        return hops if forwarded else 0

    def __call__(self, environ, start_response):
        hops = self.hops_for(environ)
        if not hops:
            return self.app(environ, start_response)
        fix = self._fixes.get(hops)
        if fix is None:
            fix = self._fixes.setdefault(hops, ProxyFix(self.app, x_for=hops, x_proto=0, x_host=0, x_port=0,
                                                        x_prefix=0))
        return fix(environ, start_response)
