"""/api/v1/members and /api/v1/lists: a member's record and channels, and list membership (the roster).
Staff read and edit anyone; a member reads their own record and sets their own channels."""
from __future__ import annotations

from flask import current_app, jsonify, request

from relay.infra.db import transaction
from relay.members.directory import RowError, find_member, set_channels
from relay.members.roster import (
    ListNotFound,
    add_to_list,
    list_summaries,
    list_summary,
    remove_from_list,
    update_member,
)
from relay.model.translatable import N_

from ..i18n import refuse as abort_with
from .core import (
    SIGNED_IN,
    RequestRefused,
    actor,
    bad_request,
    blueprint,
    current_caller,
    iso,
    json_object,
    log,
    may,
    refuse,
    requires,
)


def _member_json(member) -> dict:
    return {"id": member.id, "name": member.name, "phone": member.phone, "email": member.email,
            "channels": list(member.channels), "sms_opted_out": member.sms_opted_out_at is not None,
            "email_opted_out": member.email_opted_out_at is not None,
            "email_suspended": member.email_suspended_at is not None,
            "email_hard_bounces": member.email_hard_bounces, "whatsapp": member.whatsapp_number,
            "whatsapp_opted_in": member.whatsapp_opted_in_at is not None,
            "whatsapp_opted_out": member.whatsapp_opted_out_at is not None, "timezone": member.timezone,
            "language": member.language, "roles": sorted(member.role_set), "active": member.active}


def _find_member(session, who: str):
    text = who.strip()
    if text.isdigit() and not text.isascii():
        return None  # '²' or '١': str.isdigit() yet not a number int() reads
    return find_member(session, who)


def _member_or_refusal(session, who: str, action: str):
    """The member `who` if the caller may do `action` to them (staff), or to themselves (their own
    preferences); else a 403 — the same whether or not `who` exists, so a member learns nothing of others."""
    member = _find_member(session, who)
    caller = current_caller()
    own = member is not None and member.id == caller.member_id and may("preferences.own")
    if not (may(action) or own):
        return None, refuse(403, RequestRefused(N_("%(who)s may not %(action)s"), who=caller.actor.label,
                                                action=action))
    if member is None:
        bad_request(404, N_("no member %(who)s"), who=repr(who))
    return member, None


@blueprint.get("/members/<who>")
@requires(SIGNED_IN)
def get_member(who: str):
    """Staff read any member; a member reads their own record."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        member, refusal = _member_or_refusal(session, who, "member.read")
        return refusal or jsonify(_member_json(member))


@blueprint.put("/members/<who>/channels")
@requires(SIGNED_IN)
def put_channels(who: str):
    """Body: {"channels": ["sms", "email", "whatsapp"]} — an empty list stops case discussion on every
    channel. Staff set anyone's; a member sets their own. Choosing WhatsApp sends nothing there until the
    member's opt-in is recorded (whatsapp_opted_in)."""
    services = current_app.extensions["relay"]
    data = request.get_json(silent=True)
    with transaction(services.sessions) as session:
        member, refusal = _member_or_refusal(session, who, "member.edit")
        if refusal:
            return refusal
        if not isinstance(data, dict) or not isinstance(data.get("channels"), list) or \
                not all(isinstance(c, str) for c in data["channels"]):
            bad_request(400, N_("expected JSON %(shape)s"), shape='{"channels": ["sms", "email"]}')
        try:
            set_channels(member, data["channels"])
        except RowError as exc:
            abort_with(422, exc)
        result = _member_json(member)
    log.info("member %s channels set to %s by %s", result["id"], result["channels"], actor().label)
    return jsonify(result)


@blueprint.patch("/members/<who>")
@requires("member.edit")
def patch_member(who: str):
    """Change name, timezone, language, roles (admins only) or active; anything else is refused."""
    services = current_app.extensions["relay"]
    data = json_object()
    if "roles" in data and not may("member.roles"):
        return refuse(403, RequestRefused(N_("%(who)s may not member.roles (only admins grant roles)"),
                                          who=actor().label))
    with transaction(services.sessions) as session:
        member = _find_member(session, who)
        if member is None:
            bad_request(404, N_("no member %(who)s"), who=repr(who))
        try:
            update_member(session, member, data, actor=actor())
        except TypeError as exc:
            abort_with(400, exc)
        except RowError as exc:
            abort_with(422, exc)
        result = _member_json(member)
    log.info("member %s changed (%s) by %s", result["id"], ", ".join(sorted(data)), actor().label)
    return jsonify(result)


# ---------------------------------------------------------------- lists

def _list_json(summary) -> dict:
    return {"name": summary.name, "members": summary.members, "created_at": iso(summary.created_at)}


@blueprint.get("/lists")
@requires("list.read")
def get_lists():
    """Every list with its member count."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify({"lists": [_list_json(s) for s in list_summaries(session)]})


@blueprint.get("/lists/<name>")
@requires("list.read")
def get_list_route(name: str):
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        try:
            return jsonify(_list_json(list_summary(session, name)))
        except ListNotFound as exc:
            abort_with(404, exc)


def _membership_change(name: str, who: str, change):
    services = current_app.extensions["relay"]
    with transaction(services.sessions) as session:
        member = _find_member(session, who)
        if member is None:
            bad_request(404, N_("no member %(who)s"), who=repr(who))
        try:
            changed = change(session, name, member, actor=actor())
        except ListNotFound as exc:
            abort_with(404, exc)
        summary = list_summary(session, name)
        member_id = member.id
    log.info("member %s %s list %s by %s (changed: %s)", member_id,
             "added to" if change.__name__ == "add_to_list" else "removed from", name, actor().label, changed)
    return jsonify({"list": _list_json(summary), "member": member_id,
                    "member_of": change.__name__ == "add_to_list", "changed": changed})


@blueprint.put("/lists/<name>/members/<who>")
@requires("list.edit")
def put_membership(name: str, who: str):
    """Put the member on the list (nothing changes if they are on it already)."""
    return _membership_change(name, who, add_to_list)


@blueprint.delete("/lists/<name>/members/<who>")
@requires("list.edit")
def delete_membership(name: str, who: str):
    """Take the member off the list (nothing changes if they are not on it)."""
    return _membership_change(name, who, remove_from_list)
