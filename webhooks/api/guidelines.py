"""/api/v1/guidelines (read-only, open like the library's guideline pages): each guideline's current
text and its versions."""
from __future__ import annotations

from flask import current_app, jsonify

from relay.library.guidelines import (
    GuidelineNotFound,
    current_version,
    get_guideline,
    guideline_url,
    list_guidelines,
)

from ..i18n import refuse as abort_with
from .core import blueprint, iso, requires


def _version_json(settings, slug: str, version) -> dict:
    return {"number": version.number, "title": version.title, "changes": version.changes,
            "published_at": iso(version.published_at),
            "author": version.author.short_name if version.author else None,
            "url": guideline_url(settings, slug, version.number)}


@blueprint.get("/guidelines")
@requires(None)
def list_guidelines_json():
    """Every guideline with its current version, the most recently changed first."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        return jsonify({"guidelines": [
            {"slug": g.slug, "title": g.title, "url": guideline_url(services.settings, g.slug),
             "current": _version_json(services.settings, g.slug, current_version(g))}
            for g in list_guidelines(session)]})


@blueprint.get("/guidelines/<slug>")
@requires(None)
def get_guideline_json(slug: str):
    """A guideline: its current text, and every version (newest first) with what it changed."""
    services = current_app.extensions["relay"]
    with services.sessions() as session:
        try:
            guideline = get_guideline(session, slug)
        except GuidelineNotFound as exc:
            abort_with(404, exc)
        latest = current_version(guideline)
        return jsonify({"slug": guideline.slug, "title": guideline.title,
                        "url": guideline_url(services.settings, guideline.slug), "body": latest.body,
                        "current": _version_json(services.settings, guideline.slug, latest),
                        "versions": [_version_json(services.settings, guideline.slug, v)
                                     for v in sorted(guideline.versions, key=lambda v: v.number, reverse=True)]})
