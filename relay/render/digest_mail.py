"""The emails of issue 5, composed when sent (the same bytes every time): the digest itself, with the
list headers of every list mail (RFC 2369/8058 List-Unsubscribe bound to the subscription), and the
short transactional ones — confirm a subscription, unsubscribed, preferences changed — which carry
no list headers (they are answers to the reader's own action, sent once)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from types import SimpleNamespace

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.guard import kind_names
from relay.infra.signing import signed_id, unsubscribe_token
from relay.infra.storage import in_values
from relay.model.messages import OutboundMessage
from relay.model.tables import Case, Delivery, Digest, DigestSubscription, Member
from relay.render import i18n
from relay.render.i18n import N_
from relay.render.mail import (
    LOOP_HEADER,
    compose_message,
    pre_rendered_to,
    preferences_url,
    render_mail_template,
    reply_address,
)

# issue 13: an email post that did not prove its sender waits for its member to confirm it from their
# registered address (relay/inbound/email_confirm.py decides when; this module composes the email).
CONFIRM_POST = "confirm_email_post"  # the delivery's purpose
CONFIRM_POST_TOKEN = "confirm-email-post"  # the purpose its link's signature is bound to

# issue 16: the answer to an email reply the patient-information guard held (relay/discussion/holding.py)
GUARD_HELD = "guard_held"
# and the note to an email reply's author that an image of it was held (relay/library/images.py guard_pixels)
GUARD_IMAGE_HELD = "guard_image_held"

PURPOSES = frozenset({"digest", "confirm_subscription", "unsubscribed", "unsubscribed_digest",
                      "preferences_changed", CONFIRM_POST, GUARD_HELD, GUARD_IMAGE_HELD})
SUBJECTS = {  # translated in the member's language from the catalogue (relay/translations/)
    "confirm_subscription": N_("Confirm your %(network)s digest subscription"),
    "unsubscribed": N_("You are unsubscribed from %(network)s email"),
    "unsubscribed_digest": N_("You are unsubscribed from the %(network)s digest"),
    "preferences_changed": N_("Your %(network)s preferences were changed"),
    CONFIRM_POST: N_("Did you write this? Confirm your %(network)s post"),  # issue 13
    GUARD_HELD: N_("Not relayed: your %(network)s reply seems to name a patient"),  # issue 16
    GUARD_IMAGE_HELD: N_("Held: an image of your %(network)s reply seems to name a patient"),  # issue 16
}


def digest_unsubscribe_url(settings, subscription_id: int) -> str:
    return f"{settings.public_base_url}/unsubscribe/{unsubscribe_token(settings.secret(), subscription_id, 'digest')}"


def confirm_url(settings, subscription_id: int) -> str:
    return f"{settings.public_base_url}/digest/confirm/{signed_id(settings.secret(), 'confirm-digest', subscription_id)}"


def post_confirm_url(settings, event_id: int) -> str:
    """The link that confirms a held email post (inbound event `event_id`)."""
    return f"{settings.public_base_url}/email/confirm/{signed_id(settings.secret(), CONFIRM_POST_TOKEN, event_id)}"


def outbound(session: Session, settings, delivery: Delivery) -> OutboundMessage:
    message = compose(session, settings, delivery)
    return OutboundMessage(delivery.id, "email", delivery.to_address, delivery.body, raw=message.as_bytes(),
                           message_id=str(message["Message-ID"]).strip("<>"))


def compose(session: Session, settings, delivery: Delivery) -> EmailMessage:
    member = session.get(Member, delivery.member_id) if delivery.member_id else None
    to = SimpleNamespace(name=member.name if member else "", email=delivery.to_address)
    domain = settings.email_domain
    if delivery.purpose == "digest":
        digest = session.get(Digest, int(delivery.dedupe_key.split(":")[1]))
        sub = session.get(DigestSubscription, digest.subscription_id) if digest else None
        if digest is None or sub is None:  # both are kept while a delivery names them
            raise LookupError(f"delivery {delivery.id}: its digest or subscription is gone")
        token = unsubscribe_token(settings.secret(), sub.id, "digest")
        urls = (f"{settings.public_base_url}/unsubscribe/{token}",
                f"mailto:unsubscribe+{token}@{domain}?subject=unsubscribe")
        return compose_message(settings, to, settings.network_name, digest.subject, digest.created_at,
                        f"digest-{digest.id}.{sub.id}@{domain}", [], None, settings.library_url, True, urls,
                        digest.text, digest.html)
    context = {"network": settings.network_name, "library": settings.library_url,
               "preferences_url": preferences_url(settings, member.id) if member else None}
    if delivery.purpose == "preferences_changed":  # its body: what changed, one change a line (webhooks/preferences.py)
        context["changes"] = [line for line in (delivery.body or "").splitlines() if line.strip()]
    if delivery.purpose == "confirm_subscription":
        context["confirm_url"] = confirm_url(settings, int(delivery.dedupe_key.split(":")[1]))
    if delivery.purpose == CONFIRM_POST:  # issue 13: an email post that did not prove its sender
        case = session.get(Case, delivery.case_id) if delivery.case_id else None
        context.update(confirm_url=post_confirm_url(settings, int(delivery.dedupe_key.split(":")[1])),
                       code=case.code if case else "", text=delivery.body,
                       hours=int(settings.email_confirm_window.total_seconds() // 3600))
    reply_to = None
    if delivery.purpose == GUARD_HELD:  # issue 16: the body is the description (kind and place, never the value)
        case = session.get(Case, delivery.case_id) if delivery.case_id else None
        hold_code, _, where = delivery.body.partition("\n")
        context.update(code=case.code if case else "", hold_code=hold_code, where=where,
                       hours=round(settings.guard_hold_for.total_seconds() / 3600))
        if case is not None and member is not None:  # a reply to it proves its sender (the signed reply address)
            reply_to = formataddr((f"{case.code} {settings.network_name}", reply_address(settings, member.id, case.id)))
    language = member.language if member else "en"
    if delivery.purpose == GUARD_IMAGE_HELD:  # issue 16: "<held> <filed>" then the kinds found, never a value
        counts, _, kinds = delivery.body.partition("\n")
        held, filed = (int(n) for n in counts.split())
        case = session.get(Case, delivery.case_id) if delivery.case_id else None
        context.update(code=case.code if case else "", held=held, filed=filed,
                       kinds=kind_names(kinds.split(","), i18n.translator(language).gettext))
    text = render_mail_template(settings.templates_dir, f"{delivery.purpose}.txt", language, **context)
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((settings.network_name, settings.email_from))
    message["To"] = formataddr((to.name, to.email))
    message["Subject"] = i18n.translate(language, SUBJECTS[delivery.purpose], network=settings.network_name)
    message["Date"] = format_datetime(delivery.created_at)
    message["Message-ID"] = f"<{delivery.purpose.replace('_', '-')}-{delivery.id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message[LOOP_HEADER] = domain
    if reply_to:
        message["Reply-To"] = reply_to
    message.set_content(text)
    return message


# Placeholders for what differs between subscribers of the same digest: ASCII words that no header
# folding or escaping changes (the body is sent 8bit, not re-encoded).
_NAME = "Relaynameplaceholderzq"
_EMAIL = "relayaddressplaceholderzq@placeholder.invalid"
_ID = "relaydigestidzq"
_TOKEN = "relaydigesttokenzq"
_PREFS = "relaydigestpreferenceszq"


class DigestEmails:
    """Digest emails for a batch of deliveries (relay/outbound/bulk.py): each distinct digest (its subject,
    date, and text and HTML with the subscriber's own links taken out) is composed once per process
    (the batches of one run share a few), then each subscriber's address, Message-ID and links are put
    in. The same headers and content as compose(); anything unusual (a non-ASCII address, a body that
    cannot go 8bit, an address that is not a plain ASCII addr-spec) is composed whole."""

    _cache: OrderedDict[tuple, bytes | None] = OrderedDict()  # the latest distinct digests, per process
    CACHED = 32
    _lock = threading.Lock()

    def __init__(self, session: Session, settings, deliveries: list[Delivery]):
        self.session, self.settings = session, settings
        ids = [int(d.dedupe_key.split(":")[1]) for d in deliveries if d.purpose == "digest"]
        self._digests: dict[int, tuple[Digest, DigestSubscription]] = {}
        if ids:
            rows = session.execute(select(Digest, DigestSubscription).join(
                DigestSubscription, DigestSubscription.id == Digest.subscription_id).where(in_values(session, Digest.id, ids)))
            self._digests = {digest.id: (digest, sub) for digest, sub in rows}

    def for_delivery(self, delivery: Delivery, member: Member | None) -> tuple[bytes, str]:
        """(raw message, Message-ID) for one digest delivery."""
        found = self._digests.get(int(delivery.dedupe_key.split(":")[1]))
        to = pre_rendered_to(member.name if member else "", delivery.to_address)
        if found is not None and to is not None:
            digest, sub = found
            secret = self.settings.secret()
            token = unsubscribe_token(secret, sub.id, "digest")
            prefs = signed_id(secret, "preferences", member.id) if member else None
            text, html = digest.text.replace(token, _TOKEN), digest.html.replace(token, _TOKEN)
            if prefs:
                text, html = text.replace(prefs, _PREFS), html.replace(prefs, _PREFS)
            s = self.settings
            key = (s.email_from, s.email_domain, s.network_name, s.public_base_url, s.library_url, digest.subject,
                   digest.created_at, text, html)
            cache = DigestEmails._cache
            with DigestEmails._lock:
                if key in cache:
                    cache.move_to_end(key)
                else:
                    cache[key] = self._template(digest, text, html)
                    while len(cache) > self.CACHED:
                        cache.popitem(last=False)
                template = cache[key]
            if template is not None:
                ident = f"{digest.id}.{sub.id}"
                raw = (template.replace(formataddr((_NAME, _EMAIL)).encode(), to)
                       .replace(_ID.encode(), ident.encode()).replace(_TOKEN.encode(), token.encode()))
                if prefs:
                    raw = raw.replace(_PREFS.encode(), prefs.encode())
                return raw, f"digest-{ident}@{self.settings.email_domain}"
        message = compose(self.session, self.settings, delivery)
        return message.as_bytes(), str(message["Message-ID"]).strip("<>")

    def _template(self, digest: Digest, text: str, html: str) -> bytes | None:
        s = self.settings
        domain = s.email_domain
        urls = (f"{s.public_base_url}/unsubscribe/{_TOKEN}",
                f"mailto:unsubscribe+{_TOKEN}@{domain}?subject=unsubscribe")
        try:
            message = compose_message(s, SimpleNamespace(name=_NAME, email=_EMAIL), s.network_name, digest.subject,
                               digest.created_at, f"digest-{_ID}@{domain}", [], None, s.library_url, True, urls,
                               text, html)
            parts = list(message.iter_parts())
            text, html = (part.get_content() for part in parts)
            parts[0].set_content(text, cte="8bit")  # sent as is: the placeholders stay whole
            parts[1].set_content(html, subtype="html", cte="8bit")
            raw = message.as_bytes()
        except ValueError:  # a line too long for 8bit, say: composed whole, subscriber by subscriber
            return None
        if formataddr((_NAME, _EMAIL)).encode() not in raw or _ID.encode() not in raw:
            return None
        return raw
