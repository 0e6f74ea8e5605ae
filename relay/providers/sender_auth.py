"""Whether an inbound email proves who sent it (issue 13, item 1).

A From line proves nothing: anyone can write any member's address there. An email is the member's
when it carries relay's signed reply address bound to that member (relay/discussion/threads.py), or when its
provider reports an SPF or DKIM pass for a domain aligned with the From domain: equal to it, or its
parent or subdomain within the same organisational domain (the Public Suffix List decides where that
ends, so `evil.co.uk` is never aligned with `hospital.co.uk`). Anything else is held until the member
confirms it from their registered address (relay/inbound/email_confirm.py).

What each provider really sends (tests/data/*, /work/shared/docs/PROTOCOLS.md §7):
- Mailgun: `X-Mailgun-Spf: Pass` (for the SMTP MAIL FROM, the `sender` field) and
  `X-Mailgun-Dkim-Check-Result: Pass` (no domain: read from the DKIM-Signature's d=) in message-headers
  and as top-level fields.
- SendGrid: form fields `SPF` ("pass", for envelope.from) and `dkim` (`{@example.com : pass}`, one entry
  per signature).
- Postmark: `Received-SPF: pass (…) … envelope-from="…"` and SpamAssassin's `X-Spam-Tests` (DKIM_VALID_AU:
  a valid signature from the author's domain) in Headers.
A verdict written as a header can also be written by the sender into the message itself, so every copy
of such a header must agree (the provider's own is always there: a forged "pass" next to the provider's
"fail" proves nothing). Authentication-Results (RFC 8601) count only from the receiving servers named in
RELAY_EMAIL_TRUSTED_AUTHSERV_IDS, which must strip copies of their own id from incoming mail."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable, Sequence

from publicsuffixlist import PublicSuffixList

from relay.model.messages import AuthVerdict

PASS = "pass"


def domain_of(address: str | None) -> str:
    """The lowercased domain of an address ("" when it has none)."""
    address = (address or "").strip().strip("<>").strip()
    return address.rpartition("@")[2].lower().rstrip(".") if "@" in address else ""


@lru_cache(maxsize=1)
def _psl():
    return PublicSuffixList()


def aligned(domain: str, from_domain: str) -> bool:
    """Whether an authenticated domain speaks for the From domain: the same, or one the parent of the
    other inside one organisational domain (never across a public suffix)."""
    domain, from_domain = (domain or "").lower().rstrip("."), (from_domain or "").lower().rstrip(".")
    if not domain or not from_domain:
        return False
    if domain == from_domain:
        return True
    if not (domain.endswith("." + from_domain) or from_domain.endswith("." + domain)):
        return False
    organisation = _psl().privatesuffix(from_domain)
    return organisation is not None and organisation == _psl().privatesuffix(domain)


def proof(verdicts: Iterable[AuthVerdict], from_address: str, trusted_authserv_ids: Sequence[str] = ()) -> str | None:
    """How the verdicts prove the From address ("dkim=pass hospital.example (sendgrid)"), or None."""
    from_domain = domain_of(from_address)
    trusted = {i.lower() for i in trusted_authserv_ids}
    for verdict in verdicts:
        if verdict.source.startswith("ar:") and verdict.source[3:].lower() not in trusted:
            continue
        if verdict.result == PASS and aligned(verdict.domain, from_domain):
            return f"{verdict.method}=pass {verdict.domain} ({verdict.source})"
    return None


# ---- reading what the providers send

def header_values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    wanted = name.lower()
    return [str(value) for key, value in headers if key.lower() == wanted]


def _word(value: str) -> str:
    parts = (value or "").strip().split(None, 1)
    return parts[0].lower().rstrip(";:,") if parts else ""


def _unanimous(values: Sequence[str]) -> str:
    """"pass" when every copy says pass, else the first copy's result ("fail" when they disagree)."""
    results = {_word(v) for v in values}
    return results.pop() if len(results) == 1 else "fail"


_DKIM_D = re.compile(r"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.I)


def dkim_signature_domains(headers: Sequence[tuple[str, str]]) -> set[str]:
    return {m.group(1).lower().rstrip(".") for v in header_values(headers, "DKIM-Signature")
            for m in [_DKIM_D.search(v)] if m}


_COMMENT = re.compile(r"\([^()]*\)")
_RESINFO = re.compile(r"^\s*(spf|dkim)\s*=\s*([a-z]+)(.*)$", re.I | re.S)
_PROPERTY = re.compile(r"\b(smtp\.mailfrom|header\.d|header\.i)\s*=\s*\"?([^\s;\"]+)", re.I)


def authentication_results(headers: Sequence[tuple[str, str]]) -> list[AuthVerdict]:
    """SPF and DKIM results of every Authentication-Results (and ARC-Authentication-Results) header,
    each with its authserv-id as source "ar:<id>" (trusted or not is decided by proof())."""
    verdicts = []
    values = header_values(headers, "Authentication-Results") + [
        re.sub(r"^\s*i\s*=\s*\d+\s*;", "", v) for v in header_values(headers, "ARC-Authentication-Results")]
    for value in values:
        value = _COMMENT.sub(" ", _COMMENT.sub(" ", value))
        serv, _, rest = value.partition(";")
        serv_id = (serv.split() or [""])[0].lower()
        for resinfo in rest.split(";"):
            match = _RESINFO.match(resinfo)
            if not match:
                continue
            method, result, props = match.group(1).lower(), match.group(2).lower(), dict(
                (k.lower(), v) for k, v in _PROPERTY.findall(match.group(3)))
            if method == "spf":
                domain = domain_of(props.get("smtp.mailfrom", "")) or props.get("smtp.mailfrom", "").lower()
            else:
                domain = props.get("header.d", "").lower() or domain_of(props.get("header.i", ""))
            if domain:
                verdicts.append(AuthVerdict(method, result, domain, f"ar:{serv_id}"))
    return verdicts


def mailgun_verdicts(headers: Sequence[tuple[str, str]], envelope_from: str) -> tuple[AuthVerdict, ...]:
    """`headers`: message-headers (or the raw message's) plus Mailgun's top-level X-Mailgun-* fields."""
    verdicts = []
    spf = header_values(headers, "X-Mailgun-Spf")
    if spf and domain_of(envelope_from):
        verdicts.append(AuthVerdict("spf", _unanimous(spf), domain_of(envelope_from), "mailgun"))
    dkim = header_values(headers, "X-Mailgun-Dkim-Check-Result")
    domains = dkim_signature_domains(headers)
    if dkim and len(domains) == 1:  # one result for the message: with two signatures, which one passed?
        verdicts.append(AuthVerdict("dkim", _unanimous(dkim), domains.pop(), "mailgun"))
    return tuple(verdicts + authentication_results(headers))


_SENDGRID_DKIM = re.compile(r"@([^\s:,{}]+)\s*:\s*([a-z]+)", re.I)


def sendgrid_verdicts(spf: str, dkim: str, envelope_from: str,
                      headers: Sequence[tuple[str, str]]) -> tuple[AuthVerdict, ...]:
    """SendGrid's own fields: `SPF` ("pass") for envelope.from, `dkim` ("{@example.com : pass, …}")."""
    verdicts = []
    if spf.strip() and domain_of(envelope_from):
        verdicts.append(AuthVerdict("spf", _word(spf), domain_of(envelope_from), "sendgrid"))
    for domain, result in _SENDGRID_DKIM.findall(dkim or ""):
        verdicts.append(AuthVerdict("dkim", result.lower(), domain.lower().rstrip("."), "sendgrid"))
    return tuple(verdicts + authentication_results(headers))


_ENVELOPE_FROM = re.compile(r"\benvelope-from\s*=\s*\"?<?([^\s;\">]+)", re.I)


def postmark_verdicts(headers: Sequence[tuple[str, str]], envelope_from: str,
                      from_address: str) -> tuple[AuthVerdict, ...]:
    verdicts = []
    spf = header_values(headers, "Received-SPF")
    if spf:
        domains = {domain_of(m.group(1)) if m else domain_of(envelope_from)
                   for m in (_ENVELOPE_FROM.search(v) for v in spf)}
        domain = domains.pop() if len(domains) == 1 else ""
        if domain:
            verdicts.append(AuthVerdict("spf", _unanimous(spf), domain, "postmark"))
    tests = header_values(headers, "X-Spam-Tests")
    if tests and domain_of(from_address):
        author = all("DKIM_VALID_AU" in {t.strip() for t in v.split(",")} for v in tests)
        verdicts.append(AuthVerdict("dkim", PASS if author else "none", domain_of(from_address), "postmark"))
    return tuple(verdicts + authentication_results(headers))
