"""Processing one inbound SMS: rules, thread resolution, the post, and the deliveries it causes.

Idempotent: the event row is locked and marked processed in the same transaction that writes
the post (unique per inbound event) and the deliveries (unique per dedupe key); a second run
finds it processed and does nothing. Deliveries are dispatched only after the commit."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relay.discussion import holding
from relay.inbound import ack_commands, coordinator_commands, guard_commands, whatsapp
from relay.inbound import batch as inbound_batch
from relay.inbound import ladder_commands as ladder_sms
from relay.inbound import limits as inbound_limits
from relay.inbound.mail import process_email_event
from relay.inbound.record import attempt
from relay.inbound.replies import accept_reply
from relay.infra.db import transaction
from relay.infra.dispatch import dispatch_safely
from relay.infra.logs import mask, mask_text
from relay.infra.metrics import INBOUND_LATENCY
from relay.members import consent, ladder
from relay.model.tables import InboundEvent, Member, utcnow
from relay.notices import acks
from relay.outbound import fanout
from relay.outbound.queueing import dispatch_deliveries
from relay.providers import twilio_sms
from relay.providers import whatsapp as whatsapp_provider
from relay.render.texts import fit_sms, render_sms
from relay.rules import ACCEPT, COMMAND, DISCARD, REJECT, RuleContext, acknowledgement, coordinator_command, decide

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    event_id: int
    outcome: str
    post_id: int | None = None
    delivery_ids: tuple[int, ...] = ()
    image_ids: tuple[int, ...] = ()  # MMS pictures to fetch
    after: tuple = ()  # issue 17: what a coordinator command does after the commit (coordinator_commands.After)


def process_inbound(services, event_id: int) -> Outcome:
    """Process one recorded inbound SMS and dispatch what it caused. Inside an open batch that holds it
    (relay/inbound/batch.py), it is processed in the batch's transaction, and what it caused is written
    and dispatched with the batch."""
    batch = inbound_batch.current()
    if batch is not None and batch.holds(event_id):
        outcome = _process(batch.session, services.settings, event_id, batch)
        batch.delivery_ids.extend(outcome.delivery_ids)  # planned on their own (WhatsApp's), not deferred
        batch.images.extend(outcome.image_ids)
        batch.after.extend(outcome.after)
        return outcome
    with attempt(services, event_id):  # a transient database error does not count (relay/inbound/record.py)
        try:
            with transaction(services.sessions) as session:
                outcome = _process(session, services.settings, event_id)
        except IntegrityError:
            # Another worker processed the same event at the same moment and won; its work stands.
            log.info("inbound %s: processed concurrently elsewhere", event_id)
            return Outcome(event_id, "duplicate")
    if outcome.delivery_ids:  # a big discussion's relays go in bulk tasks (relay/outbound/queueing.py)
        dispatch_deliveries(services, list(outcome.delivery_ids))
    for image_id in outcome.image_ids:  # a lost dispatch is picked up by the sweeper
        dispatch_safely(services.dispatcher.fetch_media, image_id)
    for after in outcome.after:
        coordinator_commands.run_after(services, after)
    return outcome


def _process(session: Session, settings, event_id: int, batch: inbound_batch.Batch | None = None) -> Outcome:
    """One event, in the caller's transaction. With a batch, the event is the one the batch locked, the
    sender's member comes from the batch, and the delivery rows are written with the batch's."""
    if batch is not None:
        batch.refresh()  # after a command earlier in the batch, what it changed is read again
    event = batch.events[event_id] if batch is not None else session.get(InboundEvent, event_id,
                                                                             with_for_update=True)
    if event is None:
        log.warning("inbound %s: no such event", event_id)
        return Outcome(event_id, "missing")
    if event.kind == "email":
        return _process_email(session, settings, event)
    try:
        form = batch.forms.get(event_id) if batch is not None else None
        form = dict(form) if form is not None else twilio_sms.parse_raw(event.raw)
        message = twilio_sms.parse_inbound(form)
    except twilio_sms.BadWebhook as exc:  # checked at the edge, so only a hand-edited row gets here
        event.processed_at, event.outcome, event.detail = utcnow(), "invalid", str(exc)
        return Outcome(event_id, "invalid")
    if whatsapp_provider.is_whatsapp(message.sender):  # issue 19: same webhook, own module
        if batch is not None:
            batch.write_pending()  # its commands may change what the rows planned before it become
        done = whatsapp.process(session, settings, event, form, message)
        if done.outcome != "duplicate":
            _finish(event, done.outcome)
            if batch is not None and batch.recent is not None:
                batch.recent.processed(event, done.outcome)
        return Outcome(event_id, done.outcome, done.post_id, tuple(done.delivery_ids), tuple(done.image_ids))
    member = (batch.member(message.sender) if batch is not None
              else session.scalar(select(Member).where(Member.phone == message.sender)))
    ctx = RuleContext(
        message=message,
        member_id=member.id if member else None,
        member_active=bool(member and member.active),
        member_roles=member.role_set if member else frozenset(),
        own_numbers=settings.own_numbers,
        already_processed=event.processed_at is not None,
        open_acks=tuple(acks.open_requests(session, member.id)) if member and acknowledgement.might_be(
            message.body) else (),
    )
    decision = decide(ctx)
    verdict = decision.verdict
    if (verdict.command == "guard_send" and member is not None
            and holding.waiting_for(session, member.id, verdict.argument or "") is None):
        # Issues 16 and 17 both read "SEND <code>": a code that holds none of the author's own messages may be
        # an authorised coordinator's confirmation code (relay/rules/coordinator_command.py).
        coordinator = coordinator_command.check(ctx)
        if coordinator is not None and coordinator.action == COMMAND:
            verdict = coordinator
    if verdict.action == DISCARD and event.processed_at is not None:
        return Outcome(event_id, "duplicate")

    plan = _Plan(settings, event.id, message.sender, ctx.member_id, member.language if member else "en")
    plan.form = form
    post_id = None
    outcome = verdict.action
    if verdict.action == DISCARD:
        outcome = "discarded"
    elif verdict.action == REJECT:
        outcome = "rejected"
        if verdict.reply:
            # At most one such answer per number per day: a stranger (or an auto-responder) texting
            # again and again must not make us text back every time.
            plan.reply(verdict.reply, key=f"reject:{verdict.reply}:{message.sender}:{utcnow().date()}",
                       library=f"{settings.public_base_url}/library/")
    elif verdict.action == COMMAND:
        assert member is not None  # the unknown_sender rule rejects a non-member before any command rule
        if batch is not None:
            batch.write_pending()  # a command (MUTE, STOP...) acts on what came before it, as one by one
        outcome = f"command:{verdict.command}"
        source = f"sms:{message.body.strip().upper()[:20]}"
        if verdict.command == "stop":
            consent.opt_out_sms(session, member, source=source)
        elif verdict.command == "start":
            consent.opt_in_sms(session, member, source=source)
            ladder.resume(session, member, "sms", source)  # issue 5: START also ends pause, digest, urgent-only
            plan.reply("start")
        elif verdict.command == "help":
            plan.reply("help", library=f"{settings.public_base_url}/library/")
        elif verdict.command in ("guard_send", "guard_drop"):  # issue 16: the author decides on a held reply
            outcome = guard_commands.apply(session, settings, member, verdict, plan)
        elif verdict.command == "ack":  # issue 17 (relay/inbound/ack_commands.py)
            ack_commands.apply_ack(session, member, verdict.argument, "sms", event.id, plan)
        elif verdict.command in ("no_calls", "calls_ok"):
            ack_commands.apply_calls(session, member, verdict.command, source, plan)
        elif verdict.command == "coordinator":  # issue 17 (relay/inbound/coordinator_commands.py)
            detail, after = coordinator_commands.apply(session, settings, member, message.body, message.sender,
                                                       "sms", plan)
            outcome = f"command:{verdict.argument}:{detail}"[:40]
            plan.after.append(after)
        else:  # issue 5: MUTE, UNMUTE, PAUSE, DIGEST, URGENT ONLY (relay/inbound/ladder_commands.py)
            ladder_sms.apply(session, settings, member, verdict, source, plan)
    elif verdict.action == ACCEPT and (batch.recent.over_rate(settings, event) if batch and batch.recent
                                       else inbound_limits.over_rate(session, settings, event)):
        # reliability: a runaway sender is kept but not relayed past the limit, and told once an hour
        outcome = "throttled"
        plan.reply("throttled", key=inbound_limits.throttle_notice_key(message.sender, event),
                   limit=settings.inbound_per_minute)
    elif verdict.action == ACCEPT and (batch.recent.repeats_last_post(session, event, message.body)
                                       if batch and batch.recent
                                       else inbound_limits.repeats_last_post(session, event, message.body)):
        outcome = "repeat"  # reliability: an auto-responder loop stops after one message
    elif verdict.action == ACCEPT:
        assert member is not None  # the unknown_sender rule rejects a non-member: only members are accepted
        outcome, post_id = _accept(session, settings, event, member, message.body, plan,
                                   batch.posts if batch is not None else None)

    if member is not None and member.sms_opted_out_at is not None:
        plan.replies.clear()  # never text someone who has opted out, not even a confirmation
    ids: list[int] = []
    if batch is not None:
        batch.defer(plan.rows + plan.replies)
    elif plan.rows or plan.replies:
        ids = fanout.plan(session, plan.rows + plan.replies)
    _finish(event, outcome)
    if batch is not None and batch.recent is not None:
        batch.recent.processed(event, outcome)
    event.rules_fired = list(decision.fired)
    event.detail = verdict.reason
    log.info("inbound %s from %s: %s (%s)", event.id, mask(message.sender), outcome, mask_text(verdict.reason))
    return Outcome(event_id, outcome, post_id, tuple(ids), tuple(plan.images), tuple(plan.after))


def _process_email(session: Session, settings, event: InboundEvent) -> Outcome:
    if event.processed_at is not None:
        return Outcome(event.id, "duplicate")
    outcome, post_id, rows = process_email_event(session, settings, event)
    ids = fanout.plan(session, rows) if rows else []
    _finish(event, outcome)
    log.info("inbound email %s (%s): %s (%s)", event.id, event.provider, outcome, mask_text(event.detail))
    return Outcome(event.id, outcome, post_id, tuple(ids))


def _finish(event: InboundEvent, outcome: str) -> None:
    """Mark the event processed with its outcome, and time it from webhook to here."""
    event.processed_at = utcnow()
    event.outcome = outcome
    INBOUND_LATENCY.observe(max(0.0, (event.processed_at - event.received_at).total_seconds()))


def _accept(session: Session, settings, event: InboundEvent, member: Member, body: str, plan: "_Plan", posts=None):
    """Resolve the thread, save the post (with a batch's others, `posts`), plan the relays and the author's
    confirmation."""
    return accept_reply(session, settings, event, member, body, plan.form, plan, "sms", posts)


class _Plan:
    """The deliveries one inbound message causes: relays to others, and replies to the sender."""

    def __init__(self, settings, event_id: int, sender: str, member_id: int | None, language: str):
        self.settings, self.event_id, self.sender = settings, event_id, sender
        self.member_id, self.language = member_id, language
        self.rows: list[dict] = []
        self.replies: list[dict] = []
        self.form: dict[str, str] = {}
        self.images: list[int] = []  # pending MMS pictures, fetched after the commit
        self.after: list = []  # issue 17: coordinator commands' work after the commit

    def reply(self, template: str, case_id: int | None = None, key: str | None = None, **context) -> None:
        body = render_sms(self.settings.templates_dir, template, self.language,
                          network=self.settings.network_name, **context)
        self.replies.append({
            "dedupe_key": key or f"reply:{self.event_id}:{template}", "purpose": template, "member_id": self.member_id,
            "case_id": case_id, "to_address": self.sender, "body": fit_sms(body),
        })
