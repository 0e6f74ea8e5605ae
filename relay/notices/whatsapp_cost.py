"""The WhatsApp part of a notice's preview (issue 19): how many WhatsApp recipients get a free-form message
(inside their 24-hour window now) and how many a template, and the ESTIMATED cost by country from the
price table RELAY_WHATSAPP_PRICES (country,template_usd,session_usd; `default` for the rest).

The window is read now; by the time the notice goes out a member may have written (cheaper) or their
window closed (a template): the figure is an estimate, and the preview says so."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.members.phones import country_of
from relay.model.channels import WHATSAPP_WINDOW
from relay.model.tables import Member

DEFAULT = "default"


@dataclass(frozen=True)
class WhatsAppLine:
    country: str  # two-letter region of the WhatsApp numbers ("" when unknown)
    recipients: int
    templates: int  # outside the window now: a template each
    free_form: int  # inside the window now
    template_usd: Decimal | None
    session_usd: Decimal | None
    cost_usd: Decimal | None  # an estimate


class WhatsAppPriceError(ValueError):
    pass


def load_prices(path: Path) -> dict[str, tuple[Decimal, Decimal]]:
    """{region: (template price, free-form price)} from the CSV (# starts a comment)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise WhatsAppPriceError(f"no WhatsApp price table at {path} ({exc.strerror}); "
                                 "set RELAY_WHATSAPP_PRICES") from None
    rows = csv.DictReader([line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")])
    if not rows.fieldnames or not {"country", "template_usd", "session_usd"} <= set(rows.fieldnames):
        raise WhatsAppPriceError(f"{path}: the header must be country,template_usd,session_usd")
    prices = {}
    for number, row in enumerate(rows, start=2):
        country = (row["country"] or "").strip()
        try:
            template, session = Decimal(row["template_usd"].strip()), Decimal(row["session_usd"].strip())
        except (InvalidOperation, AttributeError):
            raise WhatsAppPriceError(f"{path} line {number}: expected two prices in US dollars") from None
        prices[DEFAULT if country.lower() == DEFAULT else country.upper()] = (template, session)
    return prices


def whatsapp_lines(session: Session, settings, recipients, now: datetime,
                   warnings: list[str]) -> tuple[tuple[WhatsAppLine, ...], Decimal | None]:
    """Per-country WhatsApp lines for the recipients taking WhatsApp, and the estimated total."""
    on_whatsapp = [r for r in recipients if "whatsapp" in r.channels]
    if not on_whatsapp:
        return (), None
    if not settings.whatsapp_enabled:
        warnings.append(f"WhatsApp is off (RELAY_TWILIO_WHATSAPP_FROM is unset): {len(on_whatsapp)} WhatsApp "
                        "recipient(s) get this on their other channels")
    last = dict(session.execute(select(Member.id, Member.whatsapp_last_inbound_at)
                                .where(Member.id.in_([r.member_id for r in on_whatsapp]))).all())
    per_country: dict[str, list[int]] = {}
    for r in on_whatsapp:
        line = per_country.setdefault(country_of(r.whatsapp or ""), [0, 0])
        wrote = last.get(r.member_id)
        line[0 if wrote is None or now - wrote >= WHATSAPP_WINDOW else 1] += 1
    try:
        prices: dict[str, tuple[Decimal, Decimal]] | None = load_prices(settings.whatsapp_prices)
    except WhatsAppPriceError as exc:
        prices = None
        warnings.append(str(exc))
    lines, total = [], Decimal(0) if prices is not None else None
    for country, (templates, free_form) in sorted(per_country.items()):
        price = None if prices is None else prices.get(country or DEFAULT, prices.get(DEFAULT))
        if prices is not None and price is None:
            warnings.append(f"no WhatsApp price for {country or 'unknown numbers'} and no default row")
        cost = price[0] * templates + price[1] * free_form if price is not None else None
        total = total + cost if total is not None and cost is not None else None
        lines.append(WhatsAppLine(country, templates + free_form, templates, free_form,
                                  price[0] if price else None, price[1] if price else None, cost))
    return tuple(lines), total
