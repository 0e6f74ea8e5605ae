"""Processing one inbound email: unsubscribe mail, bounces, auto-replies, then the member's reply —
threaded by reply token, Message-ID or subject code, its quoted history and signature stripped,
posted to the case and relayed to every follower by SMS and email.

The email rule table decides first (relay.rules.EMAIL_RULES: unsubscribe -> bounce -> automatic (loops,
auto-replies) -> intake (mail to RELAY_INTAKE_ADDRESS becomes a draft case) -> unknown sender ->
authorisation); then the steps that need the database run here, in order: limits (the inbound flood limit,
as for SMS) -> thread -> repeat (an auto-responder's identical text) -> sender (issue 13: the From line
proves nothing; the signed reply address or an aligned SPF/DKIM verdict does, relay/providers/sender_auth.py;
anything else is kept "unconfirmed" and the member is asked to confirm, relay/inbound/email_confirm.py).
Every rule and step asked is recorded on the event. Image attachments of a posted reply are filed under the case."""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay import rules
from relay.access.permissions import ALLOWED
from relay.discussion import holding, threads
from relay.discussion.posting import publish_reply
from relay.inbound import email_ack, email_commands, email_confirm
from relay.inbound import limits as inbound_limits
from relay.inbound.bounce_handling import handle_report
from relay.inbound.reply_text import visible_text
from relay.infra.logs import mask
from relay.library.cases import create_case
from relay.library.images import file_attachments, held_kinds
from relay.members.subscriptions import unsubscribe
from relay.model.tables import Case, InboundEvent, Member
from relay.providers import sender_auth
from relay.providers.errors import BadWebhook
from relay.providers.inbound_email import parse_inbound_email
from relay.providers.verp import is_bounce_address
from relay.render.digest_mail import GUARD_HELD, GUARD_IMAGE_HELD
from relay.render.mail import LOOP_HEADER, list_id
from relay.rules.keywords import guard_command_of

log = logging.getLogger(__name__)

INTAKE_ROLES = ALLOWED["case.intake"]


def process_email_event(session: Session, settings, event: InboundEvent, confirmed: bool = False):
    """Returns (outcome, post_id, delivery rows); the caller plans the rows and marks the event.

    `confirmed`: the member confirmed this held mail from their registered address (confirm_held)."""
    fired: list[str] = []

    def done(outcome: str, detail: str, post_id: int | None = None, rows: list | None = None):
        event.rules_fired = fired
        event.detail = detail
        return outcome, post_id, rows or []

    try:
        email = parse_inbound_email(event.provider, event.content_type, event.payload or b"")
    except (BadWebhook, ValueError) as exc:
        return done("invalid", str(exc))
    domain = settings.email_domain
    member = session.scalar(select(Member).where(Member.email == email.from_address))
    decision = rules.decide_email(rules.EmailRuleContext(
        email=email, member_id=member.id if member else None, member_active=bool(member and member.active),
        member_roles=frozenset(member.role_set) if member else frozenset(), own_domain=domain,
        own_list_ids=(list_id(settings),), loop_header=LOOP_HEADER, intake_address=settings.intake_address or "",
        to_bounce_address=any(is_bounce_address(settings, a) for a in email.recipients)))
    fired.extend(decision.fired)
    verdict = decision.verdict
    if verdict.command == "unsubscribe":
        # issue 5: list mail or a digest subscription, confirmed by one email (relay/members/subscriptions.py)
        result = unsubscribe(session, settings, verdict.argument or "", "email:mailto")
        return done("unsubscribed" if result.found else "rejected",
                    "unsubscribe by mail" if result.found else "bad token", rows=result.rows)
    if verdict.command == "bounce":
        report = handle_report(session, settings, email, event.id)  # a bounce counts only when proven
        return done(*(report or ("discarded", verdict.reason)))
    if verdict.command == "intake":
        return _intake(session, settings, email, member, done)
    if verdict.action == rules.DISCARD:
        return done("discarded", verdict.reason)
    if verdict.action == rules.REJECT or member is None:  # (None: the unknown-sender rule rejected it)
        return done("rejected", verdict.reason)  # no reply: it would be backscatter
    acknowledged = email_ack.acknowledge(session, settings, email, member, event.id)  # issue 17: ACK by email
    if acknowledged is not None:
        fired.append("acknowledgement")
        return done(*acknowledged)
    commanded = email_commands.handle(session, settings, email, member, event.id)  # issue 17: NOTICE, SEND, ...
    if commanded is not None:
        fired.append("coordinator_command")
        return done(commanded[0], commanded[1], rows=commanded[2])

    fired.append("limits")
    if not confirmed and inbound_limits.over_rate(session, settings, event):
        # no answer by mail: the From line may be forged, and answering would make us a mail cannon
        log.warning("inbound email %s from %s: over %s a minute, kept and not relayed", event.id,
                    mask(email.from_address), settings.inbound_per_minute)
        return done("throttled", f"over {settings.inbound_per_minute} messages a minute from this sender")

    fired.append("thread")
    found = threads.resolve_email_thread(session, settings.secret(), domain, email, member.id)
    if found.how == threads.TOKEN_MISMATCH:
        log.warning("inbound email %s: reply token of another member used by %s", event.id, mask(email.from_address))
        return done("rejected", "reply token belongs to another member")
    if found.case_id is None:
        return done("no_case", "no reply token, known Message-ID or [C123] subject")
    case = session.get(Case, found.case_id)
    assert case is not None  # resolve_email_thread gives only the id of a case it found; cases are never deleted
    if case.status != "open":
        return done("closed_case", f"{case.code} is closed")
    text = visible_text(email.text, email.html)
    pictures = [a for a in email.attachments if a.content_type.startswith("image/")]
    if not text and pictures:
        text = f"[{len(pictures)} image{'s' if len(pictures) > 1 else ''}]"
    if not text:
        return done("empty", "nothing left after removing quotes and signature")

    fired.append("repeat")
    if not confirmed and inbound_limits.repeats_last_email_post(session, event, text):
        return done("repeat", "the same text as this sender's previous post")

    fired.append("sender")
    proven: str | None
    if confirmed:
        proven = "confirmed by the member"
    elif found.how == threads.EMAIL_TOKEN:
        proven = "signed reply address"
    else:
        proven = sender_auth.proof(email.auth, email.from_address, settings.email_trusted_authserv_ids)
    if proven is None:
        rows = email_confirm.confirmation_rows(session, settings, event, member, case.id, text)
        log.warning("inbound email %s from %s for %s: sender not proven (no signed reply address, no aligned "
                    "SPF/DKIM pass); held, %s", event.id, mask(email.from_address), case.code,
                    "member asked to confirm" if rows else "too many pending: member not asked again")
        return done(email_confirm.UNCONFIRMED, f"{case.code} by {found.how}: sender not proven; "
                    + ("confirmation sent to the member" if rows else "confirmation not sent (too many pending)"),
                    rows=rows)

    # issue 16: SEND/DROP <code> in a proven reply decides on a held message; a reply carrying a patient
    # identifier is held, and the member told at their own address (the sender is proven by now)
    fired.append("guard")
    command = guard_command_of(text)
    if command is not None:
        decided = holding.decide(session, settings, member, command[0], command[1], "email")
        return done(decided.outcome, f"{command[0].removeprefix('guard_').upper()} by email", rows=decided.rows)
    checked = holding.check(session, settings, case, text, event)
    if checked.held:
        held = holding.hold(session, settings, case=case, member=member, text=text, channel="email",
                            event_id=event.id, found=checked)
        answer = {"dedupe_key": f"guard-held:{held.id}", "purpose": GUARD_HELD, "channel": "email",
                  "member_id": member.id, "case_id": case.id, "to_address": member.email,
                  "body": f"{held.code}\n{checked.where(text, member.language)}"}
        return done("held", f"{case.code}: held by the guard ({', '.join(checked.scan.kinds)})", rows=[answer])
    post, rows = publish_reply(session, settings, case, member, text, "email", event.id)
    holding.supersede(session, member, case.id, "email")  # a corrected reply replaces the author's held one
    filed, notes = file_attachments(session, settings, case, email.attachments, "email", post)
    images_held = [image for image in filed if image.status == "held"]
    if images_held:  # issue 16: the text went out, the picture waits for a coordinator; its author is told why
        kinds = sorted({kind for image in images_held for kind in held_kinds(image)})
        rows.append({"dedupe_key": f"guard-image-held:{event.id}", "purpose": GUARD_IMAGE_HELD, "channel": "email",
                     "member_id": member.id, "case_id": case.id, "to_address": member.email,
                     "body": f"{len(images_held)} {len(filed)}\n{','.join(kinds)}"})
    detail = f"{case.code} by {found.how}; sender: {proven}" + (f"; {len(filed)} image(s) filed" if filed else "")
    detail += f", {len(images_held)} held by the guard" if images_held else ""
    return done("posted", "; ".join([detail, *notes]), post.id, rows)


def _intake(session: Session, settings, email, member, done):
    """Mail to the intake address: from a contributor, coordinator or admin whose provider reports an
    aligned SPF/DKIM pass it becomes a draft case (subject -> title, text -> findings, images filed) for a
    coordinator to review and publish; from anyone else, or unproven, it is refused, recorded on the
    event, and no case is made."""
    if member is None or not member.active or not (member.role_set & INTAKE_ROLES):
        log.warning("intake mail from %s refused: not a contributor, coordinator or admin", mask(email.from_address))
        return done("rejected", "intake: the sender is not an active contributor, coordinator or admin")
    if sender_auth.proof(email.auth, email.from_address, settings.email_trusted_authserv_ids) is None:
        # a draft and its images in a contributor's name need the same proof as a post (issue 13)
        log.warning("intake mail from %s refused: sender not proven (no aligned SPF/DKIM pass)",
                    mask(email.from_address))
        return done("rejected", "intake: sender not proven (no aligned SPF/DKIM pass from the provider); "
                                "no case made")
    title = " ".join((email.subject or "").split())[:300] or "Untitled case (by email)"
    text = visible_text(email.text, email.html)
    case = create_case(session, title, findings=text, draft=True)
    filed, notes = file_attachments(session, settings, case, email.attachments, "intake")
    log.info("intake mail from %s: draft %s with %s image(s)", mask(email.from_address), case.code, len(filed))
    return done("intake", "; ".join([f"draft {case.code} from {member.email}, {len(filed)} image(s) filed",
                                     *notes]))


CONFIRMED, USED, EXPIRED, INVALID = "posted", "used", "expired", "invalid"


def confirm_held(session: Session, settings, token: str):
    """The member's confirmation of a held email (the POST behind the emailed link): posts it once.

    Returns (status, post_id, delivery rows): "posted", or the event's new outcome when it cannot be
    posted any more (a closed case, say), "used" (already confirmed, or never held), "expired", "invalid"."""
    event_id = email_confirm.event_of(settings, token)
    event = session.get(InboundEvent, event_id, with_for_update=True) if event_id is not None else None
    if event is None or event.kind != "email":
        return INVALID, None, []
    if event.outcome != email_confirm.UNCONFIRMED:
        log.info("inbound email %s: confirmation refused, outcome is already %s", event.id, event.outcome)
        return USED, None, []
    if email_confirm.expired(settings, event):
        log.info("inbound email %s: confirmation refused, expired", event.id)
        return EXPIRED, None, []
    outcome, post_id, rows = process_email_event(session, settings, event, confirmed=True)
    event.outcome = outcome  # leaves "unconfirmed" in this transaction: a second confirmation is refused
    log.info("inbound email %s: confirmed by the member: %s (%s)", event.id, outcome, event.detail)
    return outcome, post_id, rows
