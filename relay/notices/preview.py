"""Preview of a notice before it is sent: who gets it on which channel and in which country, the
SMS text per language with its encoding, characters and segments (relay/render/segments.py), the estimated
SMS cost from a per-country price table, and the email (subject and text part) of one sample
recipient per language — read from the same code that sends, so the preview is what goes out.

Recipients, texts, segments and cost count only what would go now: deliveries the members' ladders hold
back (muted, paused, digest or urgent only) and those that would wait for quiet hours are counted apart
(held_back, waiting, per channel), exactly as relay.members.ladder.shape_rows() splits them when sending."""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy.orm import Session

from relay.members.ladder import preview_split
from relay.members.phones import country_of
from relay.model.tables import Case, Member, utcnow
from relay.notices.audience import audience, channels_of, link, post_body, sms_text
from relay.notices.lifecycle import get_notice
from relay.notices.whatsapp_cost import WhatsAppLine, whatsapp_lines
from relay.render.mail import notice_parts, preferences_url, render_email_text, unsubscribe_urls
from relay.render.segments import count_segments

DEFAULT = "default"


class PriceTableError(ValueError):
    pass


@dataclass(frozen=True)
class SmsRendering:
    language: str
    recipients: int
    text: str
    encoding: str  # GSM-7 or UCS-2
    characters: int
    segments: int


@dataclass(frozen=True)
class CountryLine:
    country: str  # two-letter region of the phone numbers ("" when unknown)
    recipients: int
    segments: int
    price_per_segment_usd: Decimal | None
    cost_usd: Decimal | None


@dataclass(frozen=True)
class EmailRendering:
    language: str
    recipients: int
    sample_to: str
    subject: str
    text: str


@dataclass(frozen=True)
class NoticePreview:
    notice_id: int
    kind: str
    status: str
    severity: str
    title: str
    link: str
    recipients: int  # members reached on at least one channel
    channels: dict[str, int]  # deliveries per channel
    countries: tuple[CountryLine, ...]
    sms: tuple[SmsRendering, ...]
    email: tuple[EmailRendering, ...]
    estimated_cost_usd: Decimal | None
    warnings: tuple[str, ...] = ()
    held_back: int = 0  # issue 5: deliveries the members' ladders refuse (muted, paused, digest, urgent only)
    waiting: int = 0  # issue 5: deliveries that would wait for the end of the member's quiet hours
    # issue 15: the same two, per channel (neither is in recipients, channels, countries, sms or the cost)
    held_back_channels: dict[str, int] = field(default_factory=dict)
    waiting_channels: dict[str, int] = field(default_factory=dict)
    # issue 19: WhatsApp recipients by country (template or free-form now) and the ESTIMATED cost
    whatsapp: tuple[WhatsAppLine, ...] = ()
    whatsapp_cost_usd: Decimal | None = None

    def as_dict(self) -> dict:
        """The preview as JSON-ready values (money as numbers in US dollars)."""
        return _plain(asdict(self))


def _plain(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_prices(path: Path) -> dict[str, Decimal]:
    """Read country,price_per_segment_usd rows (two-letter regions and a `default` row; # starts a comment)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise PriceTableError(f"no SMS price table at {path} ({exc.strerror}); set RELAY_SMS_PRICES") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    if not reader.fieldnames or not {"country", "price_per_segment_usd"} <= set(reader.fieldnames):
        raise PriceTableError(f"{path}: the header must be country,price_per_segment_usd")
    prices = {}
    for number, row in enumerate(reader, start=2):
        country = (row["country"] or "").strip()
        country = country.lower() if country.lower() == DEFAULT else country.upper()
        try:
            price = Decimal((row["price_per_segment_usd"] or "").strip())
        except InvalidOperation:
            raise PriceTableError(f"{path} line {number}: {row['price_per_segment_usd']!r} is not a price") from None
        if not country or price < 0:
            raise PriceTableError(f"{path} line {number}: expected a country and a price of at least 0")
        prices[country] = price
    return prices


def _costs(sms_recipients, text_segments: dict[str, int], prices: dict[str, Decimal] | None,
           warnings: list[str]) -> tuple[tuple[CountryLine, ...], Decimal | None]:
    per_country: dict[str, list[int]] = {}
    for r in sms_recipients:
        line = per_country.setdefault(country_of(r.phone), [0, 0])
        line[0] += 1
        line[1] += text_segments[r.language]
    lines, total = [], Decimal(0) if prices is not None else None
    for country, (recipients, segments) in sorted(per_country.items()):
        price = None if prices is None else prices.get(country or DEFAULT, prices.get(DEFAULT))
        if prices is not None and price is None:
            warnings.append(f"no SMS price for {country or 'unknown numbers'} and no default row")
        cost = price * segments if price is not None else None
        total = total + cost if total is not None and cost is not None else None
        lines.append(CountryLine(country, recipients, segments, price, cost))
    return tuple(lines), total


def preview_notice(session: Session, settings, notice_id: int) -> NoticePreview:
    """What sending the notice now would do: recipients, texts, segments, cost and sample emails."""
    notice = get_notice(session, notice_id)
    case = session.get(Case, notice.case_id) if notice.case_id else None
    everyone = audience(session, notice)
    going, held, waiting = preview_split(session, everyone, notice.severity == "urgent", notice.case_id)
    recipients = [r for r in (replace(r, channels=tuple(c for c in r.channels if (r.member_id, c) in going))
                              for r in everyone) if r.channels]
    sms_to = [r for r in recipients if "sms" in r.channels]
    email_to = [r for r in recipients if "email" in r.channels]
    warnings: list[str] = []

    languages = sorted({r.language for r in sms_to}) or (["en"] if "sms" in channels_of(notice) else [])
    sms = []
    for language in languages:
        text = sms_text(settings, notice, case, language)
        count = count_segments(text)
        sms.append(SmsRendering(language, sum(r.language == language for r in sms_to), text, count.encoding,
                                count.characters, count.segments))
    try:
        prices = load_prices(settings.sms_prices)
    except PriceTableError as exc:
        prices = None
        warnings.append(str(exc))
    countries, cost = _costs(sms_to, {s.language: s.segments for s in sms}, prices, warnings)

    emails = []
    body = post_body(notice, case) if case is not None else notice.body
    for language in sorted({r.language for r in email_to}):
        sample = next(r for r in email_to if r.language == language)
        unsubscribe = unsubscribe_urls(settings, sample.member_id)[0]
        subject, template, context = notice_parts(settings, notice, case, language, unsubscribe, body)
        context["preferences_url"] = preferences_url(settings, sample.member_id)  # issue 5, as relay/render/mail.py
        emails.append(EmailRendering(language, sum(r.language == language for r in email_to),
                                     _address(session, sample.member_id), subject,
                                     render_email_text(settings, template, language, context)))
    if notice.expires_at is not None and notice.expires_at <= utcnow():
        warnings.append(f"the notice expired at {notice.expires_at.isoformat()}: it will not be sent")
    whatsapp, whatsapp_cost = whatsapp_lines(session, settings, recipients, utcnow(), warnings)
    return NoticePreview(notice.id, notice.kind, notice.status, notice.severity, notice.title, link(settings, case),
                         len(recipients), {"sms": len(sms_to), "email": len(email_to),  # whatsapp: when any
                                           **({"whatsapp": sum(w.recipients for w in whatsapp)} if whatsapp else {})},
                         countries, tuple(sms), tuple(emails), cost, tuple(warnings), len(held), len(waiting),
                         _per_channel(held), _per_channel(waiting), whatsapp, whatsapp_cost)


def _per_channel(pairs: list[tuple[int, str]]) -> dict[str, int]:
    counts = {channel: sum(c == channel for _, c in pairs) for channel in ("sms", "email", "whatsapp")}
    return {channel: n for channel, n in counts.items() if n or channel != "whatsapp"}  # whatsapp: when any


def _address(session: Session, member_id: int) -> str:
    member = session.get(Member, member_id)
    assert member is not None  # a recipient (audience) was read off its member row; members are never deleted
    return f"{member.name} <{member.email}>"
