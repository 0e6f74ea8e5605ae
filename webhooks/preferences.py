"""Web pages of issue 5, thin over relay/members/ladder.py and relay/members/subscriptions.py.

/preferences/<token>: a member's ladder on each channel, reached from every email by a signed link (no
password). The form posts back to the same signed URL: the token an attacker cannot know is what
protects the POST (no cookies, so nothing for a forged cross-site request to ride on). Each change is
logged by the core and confirmed by one email.

/digest/subscribe and /digest/confirm/<token>: the double opt-in. The confirmation link only shows a
button (link scanners prefetch every URL in an email); the POST confirms."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, redirect, render_template, request
from flask_babel import gettext as _
from sqlalchemy import select

from relay.infra.db import transaction
from relay.infra.logs import mask_text
from relay.infra.signing import read_signed_id
from relay.library.cases import CaseNotFound, get_case
from relay.members import calls, consent, ladder
from relay.members.subscriptions import SubscriptionError, confirm, subscribe
from relay.model.tables import DigestSubscription, Member, MemberList, Membership, utcnow
from relay.outbound import fanout
from relay.outbound.queueing import dispatch_deliveries
from relay.render.i18n import N_, translate
from relay.render.mail import preferences_url

from .auth import current_member
from .i18n import error_text, refuse, use_member_language

log = logging.getLogger("relay.web.preferences")
blueprint = Blueprint("preferences", __name__)

SOURCE = "web:preferences"
MODES = ("all", "digest", "urgent_only", "stop")


def _services():
    return current_app.extensions["relay"]


def _member_id(token: str) -> int:
    member_id = read_signed_id(_services().settings.secret(), "preferences", token)
    if member_id is None:
        refuse(404, _("this preference link is not valid"))
    return member_id


@blueprint.get("/preferences/")
def my_preferences():
    """From the library, signed in: on to the member's own signed preference page."""
    me = current_member()
    if me is None:
        return redirect("/signin?next=/preferences/")
    return redirect(preferences_url(_services().settings, me.id))


@blueprint.get("/preferences/<token>")
def show(token: str):
    member_id = _member_id(token)
    with _services().sessions() as session:
        member = session.get(Member, member_id)
        if member is None:
            refuse(404, _("this preference link is not valid"))
        state = ladder.describe(session, member)
        subs = session.query(DigestSubscription).filter_by(member_id=member.id, status="active").all()
    use_member_language(member.language, member.timezone)  # issue 21: the signed link says who reads
    return render_template("preferences.html", token=token, member=member, state=state, subs=subs, saved=False)


# What changed, one line each, for the "preferences changed" email: said in the member's own language when
# the change is made (the email is theirs; relay.render.i18n), whatever language the page was read in.
CHANNEL_NAMES = {"sms": N_("SMS"), "email": N_("Email"), "whatsapp": N_("WhatsApp")}
MODE_LINES = {"all": N_("%(channel)s: every message"), "digest": N_("%(channel)s: a daily digest instead"),
              "urgent_only": N_("%(channel)s: urgent notices only"), "stop": N_("%(channel)s: nothing (stopped)")}


def _apply_channel(session, member: Member, channel: str, form) -> list[str]:
    """Apply one channel's part of the form; what changed, in words for the confirmation email (in the
    member's language)."""
    done: list[str] = []
    language = member.language

    def line(message: str, **variables) -> None:
        label = translate(language, CHANNEL_NAMES[channel]) if channel in CHANNEL_NAMES else channel
        done.append(translate(language, message, channel=label, **variables))

    mode = form.get(f"{channel}_mode", "")
    stopped = member.opted_out_at(channel) is not None
    if mode and mode not in MODES:
        raise ladder.LadderError(N_("%(channel)s: mode must be one of %(modes)s, got %(value)s"), channel=channel,
                                 modes=", ".join(MODES), value=repr(mode))
    changed = 0
    if channel == "whatsapp" and form.get("whatsapp_opt_in") == "on" and mode != "stop":
        if consent.take_whatsapp(session, member, SOURCE):  # issue 19: the member's own consent, logged
            line(N_("%(channel)s: opted in"))
    if mode == "stop":
        stop = {"sms": consent.opt_out_sms, "email": consent.opt_out_email,
                "whatsapp": consent.opt_out_whatsapp}[channel]
        changed += stop(session, member, SOURCE)
    elif mode:
        if stopped and channel == "email":
            changed += consent.opt_in_email(session, member, SOURCE)
        # SMS STOP is lifted only by the member's own START text: the carrier blocks us until then.
        changed += ladder.set_mode(session, member, channel, mode, SOURCE)
    if changed:
        line(MODE_LINES[mode])
    pause = form.get(f"{channel}_pause", "")
    if pause in ladder.PAUSES:
        ladder.pause(session, member, channel, ladder.PAUSES[pause], SOURCE)
        line(N_("%(channel)s: paused for 24 hours") if pause == "24H" else N_("%(channel)s: paused for 7 days"))
    elif pause == "end":
        pref = ladder.preference(session, member.id, channel)
        if pref.paused_until is not None:
            pref.paused_until = None
            ladder._log(session, member.id, channel, "unpause", SOURCE)
            line(N_("%(channel)s: the pause ended"))
    elif pause:
        raise ladder.LadderError(N_("%(channel)s: pause must be 24H, 7D or end, got %(value)s"), channel=channel,
                                 value=repr(pause))
    start, end = form.get(f"{channel}_quiet_start"), form.get(f"{channel}_quiet_end")
    if start and end and ladder.set_quiet_hours(session, member, channel, start, end, SOURCE):
        line(N_("%(channel)s: quiet hours %(start)s to %(end)s"), start=start.strip(), end=end.strip())
    for code in form.getlist(f"{channel}_unmute"):
        case = get_case(session, code)
        if ladder.unmute(session, member, channel, case.id, case.code, SOURCE):
            line(N_("%(channel)s: %(code)s unmuted"), code=case.code)
    if form.get(f"{channel}_lists_shown"):  # the list checkboxes were on the form: unchecked means every message
        wanted = set(form.getlist(f"{channel}_digest_lists"))
        for list_id, name in session.execute(select(MemberList.id, MemberList.name).join(
                Membership, Membership.list_id == MemberList.id).where(Membership.member_id == member.id)).all():
            if ladder.set_list_digest(session, member, channel, list_id, name, name in wanted, SOURCE):
                line(N_("%(channel)s: list %(name)s: digest only") if name in wanted
                     else N_("%(channel)s: list %(name)s: every message"), name=name)
    code = (form.get(f"{channel}_mute") or "").strip()
    if code:
        case = get_case(session, code)
        if ladder.mute(session, member, channel, case.id, case.code, SOURCE):
            line(N_("%(channel)s: %(code)s muted"), code=case.code)
    return done


@blueprint.post("/preferences/<token>")
def change(token: str):
    services = _services()
    member_id = _member_id(token)
    try:
        with transaction(services.sessions) as session:
            member = session.get(Member, member_id, with_for_update=True)
            if member is None:
                refuse(404, _("this preference link is not valid"))
            done = [line for channel in ladder.CHANNELS for line in _apply_channel(session, member, channel,
                                                                                    request.form)]
            if request.form.get("calls_shown") and member.phone:  # issue 17: NO CALLS on the page
                calls_ok = bool(request.form.get("calls_ok"))
                if calls.set_calls_ok(session, member, calls_ok, SOURCE, "web"):
                    done.append(translate(member.language, N_("Escalation calls: allowed") if calls_ok
                                          else N_("Escalation calls: no calls")))
            changes = len(done)
            ids = []
            if changes and member.email:  # the email says what changed (its body: one change a line)
                ids = fanout.plan(session, [{
                    "dedupe_key": f"preferences:{member.id}:{utcnow().timestamp():.6f}",
                    "purpose": "preferences_changed", "channel": "email", "member_id": member.id,
                    "to_address": member.email, "body": "\n".join(done)}])
    except (ladder.LadderError, CaseNotFound) as exc:
        # Shown on the form, the member's entries kept, so they fix the one field (nothing was saved).
        log.warning("preferences of member %s: refused: %s", member_id, exc)
        with services.sessions() as session:
            member = session.get(Member, member_id)
            state = ladder.describe(session, member)
            subs = session.query(DigestSubscription).filter_by(member_id=member.id, status="active").all()
        use_member_language(member.language, member.timezone)  # issue 21: the refusal too, in their language
        return render_template("preferences.html", token=token, member=member, state=state, subs=subs,
                               saved=False, error=error_text(exc), form=request.form), 400
    dispatch_deliveries(services, ids)
    log.info("preferences of member %s: %s change(s)", member_id, changes)
    with services.sessions() as session:
        member = session.get(Member, member_id)
        state = ladder.describe(session, member)
        subs = session.query(DigestSubscription).filter_by(member_id=member.id, status="active").all()
    use_member_language(member.language, member.timezone)
    return render_template("preferences.html", token=token, member=member, state=state, subs=subs,
                           saved=True, changes=changes)


@blueprint.get("/digest/subscribe")
def subscribe_form():
    return render_template("subscribe.html", done=False, error=None, form={})


@blueprint.post("/digest/subscribe")
def subscribe_post():
    services = _services()
    form = {key: request.form.get(key, "") for key in ("email", "frequency", "timezone", "hour")}
    try:
        with transaction(services.sessions) as session:
            sub, row = subscribe(session, email=form["email"], timezone=form["timezone"], frequency=form["frequency"],
                                 hour=form["hour"] or "7", ip=request.remote_addr or "",
                                 form={**form, "page": "/digest/subscribe"})
            ids = fanout.plan(session, [row]) if row else []
    except SubscriptionError as exc:
        log.warning("digest subscription refused: %s", mask_text(exc))
        return render_template("subscribe.html", done=False, error=error_text(exc), form=form), 400
    dispatch_deliveries(services, ids)
    return render_template("subscribe.html", done=True, error=None, form=form)


def _subscription_id(token: str) -> int:
    found = read_signed_id(_services().settings.secret(), "confirm-digest", token)
    if found is None:
        refuse(404, _("this confirmation link is not valid"))
    return found


@blueprint.get("/digest/confirm/<token>")
def confirm_page(token: str):
    _subscription_id(token)
    return render_template("subscribe_confirm.html", token=token, done=False)


@blueprint.post("/digest/confirm/<token>")
def confirm_post(token: str):
    services = _services()
    with transaction(services.sessions) as session:
        sub = confirm(session, _subscription_id(token))
        if sub is None:
            refuse(404, _("this confirmation link is not valid"))
    return render_template("subscribe_confirm.html", token=token, done=True)
