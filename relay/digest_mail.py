"""The emails of issue 5, composed when sent (the same bytes every time): the digest itself, with the
list headers of every list mail (RFC 2369/8058 List-Unsubscribe bound to the subscription), and the
short transactional ones — confirm a subscription, unsubscribed, preferences changed — which carry
no list headers (they are answers to the reader's own action, sent once)."""
from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from types import SimpleNamespace

from sqlalchemy.orm import Session

from .mail import LOOP_HEADER, _message, _render
from .messages import OutboundMessage
from .models import Delivery, Digest, DigestSubscription, Member
from .tokens import signed_id, unsubscribe_token

PURPOSES = frozenset({"digest", "confirm_subscription", "unsubscribed", "unsubscribed_digest",
                      "preferences_changed"})
SUBJECTS = {
    "confirm_subscription": "Confirm your {network} digest subscription",
    "unsubscribed": "You are unsubscribed from {network} email",
    "unsubscribed_digest": "You are unsubscribed from the {network} digest",
    "preferences_changed": "Your {network} preferences were changed",
}


def digest_unsubscribe_url(settings, subscription_id: int) -> str:
    return f"{settings.public_base_url}/unsubscribe/{unsubscribe_token(settings.secret(), subscription_id, 'digest')}"


def preferences_url(settings, member_id: int) -> str:
    return f"{settings.public_base_url}/preferences/{signed_id(settings.secret(), 'preferences', member_id)}"


def confirm_url(settings, subscription_id: int) -> str:
    return f"{settings.public_base_url}/digest/confirm/{signed_id(settings.secret(), 'confirm-digest', subscription_id)}"


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
        sub = session.get(DigestSubscription, digest.subscription_id)
        token = unsubscribe_token(settings.secret(), sub.id, "digest")
        urls = (f"{settings.public_base_url}/unsubscribe/{token}",
                f"mailto:unsubscribe+{token}@{domain}?subject=unsubscribe")
        return _message(settings, to, settings.network_name, digest.subject, digest.created_at,
                        f"digest-{digest.id}.{sub.id}@{domain}", [], None, settings.library_url, True, urls,
                        digest.text, digest.html)
    context = {"network": settings.network_name, "library": settings.library_url,
               "preferences_url": preferences_url(settings, member.id) if member else None}
    if delivery.purpose == "confirm_subscription":
        context["confirm_url"] = confirm_url(settings, int(delivery.dedupe_key.split(":")[1]))
    language = member.language if member else "en"
    text = _render(settings.templates_dir, f"{delivery.purpose}.txt", language, **context)
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((settings.network_name, settings.email_from))
    message["To"] = formataddr((to.name, to.email))
    message["Subject"] = SUBJECTS[delivery.purpose].format(network=settings.network_name)
    message["Date"] = format_datetime(delivery.created_at)
    message["Message-ID"] = f"<{delivery.purpose.replace('_', '-')}-{delivery.id}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message[LOOP_HEADER] = domain
    message.set_content(text)
    return message
