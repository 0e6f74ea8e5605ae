"""Guidelines with versions: each new version numbered and saying what changed (required), the CLI,
the library pages (list, current, any version, views) and the read-only JSON API checked against
its OpenAPI description."""
from __future__ import annotations

import re

import pytest
import schemathesis
from click.testing import CliRunner
from sqlalchemy import select

from relay.cli import main
from relay.infra.db import transaction
from relay.library.guidelines import (
    GuidelineError,
    GuidelineNotFound,
    add_version,
    create_guideline,
    current_version,
    get_guideline,
    list_guidelines,
)
from relay.model.tables import Guideline, Member
from tests.unit.webhooks.test_api_fuzz import AUTH, CHECKS
from webhooks.app import create_app

V1 = "Wear an FFP2 mask for every CT scan of a suspected case."
V2 = "Wear an FFP2 mask and gloves for every CT scan of a suspected case."


def add(services, slug="masks-in-ct", title="Masks in CT rooms", body=V1, **kwargs) -> None:
    with transaction(services.sessions) as session:
        create_guideline(session, slug, title, body, **kwargs)


def update(services, slug="masks-in-ct", body=V2, changes="Gloves too.", **kwargs) -> int:
    with transaction(services.sessions) as session:
        return add_version(session, slug, body, changes, **kwargs).number


def test_versions_are_numbered_and_say_what_changed(network):
    with transaction(network.sessions) as session:
        kim = session.scalar(select(Member).where(Member.email == "jiwon@example.org"))
        create_guideline(session, "masks-in-ct", "  Masks in   CT rooms ", V1, author=kim)
    assert update(network) == 2
    assert update(network, body="v3 text", changes="  Clarified   wording. ", title="Masks and gloves") == 3
    with network.sessions() as session:
        guideline = get_guideline(session, "MASKS-IN-CT")
        assert [(v.number, v.changes) for v in guideline.versions] == [
            (1, "First version."), (2, "Gloves too."), (3, "Clarified wording.")]
        assert guideline.versions[0].author.email == "jiwon@example.org"
        assert (current_version(guideline).body, guideline.title) == ("v3 text", "Masks and gloves")
        assert guideline.versions[0].title == "Masks in CT rooms"  # each version keeps its title


@pytest.mark.parametrize("kwargs, message", [
    ({"changes": ""}, "must say what changed"),
    ({"changes": "   "}, "must say what changed"),
    ({"body": "  "}, "needs its text"),
])
def test_a_new_version_must_say_what_changed(network, kwargs, message):
    add(network)
    with pytest.raises(GuidelineError, match=message):
        update(network, **kwargs)
    with network.sessions() as session:
        assert len(get_guideline(session, "masks-in-ct").versions) == 1


@pytest.mark.parametrize("slug, title, message", [
    ("Masks In CT", "t", "slug"), ("-masks", "t", "slug"), ("masks/../x", "t", "slug"), ("", "t", "slug"),
    ("masks", " ", "needs a title"),
])
def test_bad_slugs_and_titles_are_refused(network, slug, title, message):
    with pytest.raises(GuidelineError, match=message):
        add(network, slug=slug, title=title)


def test_a_bad_slug_is_echoed_as_typed(network):
    """Issue 15, item 10: the error quotes what the user wrote, not its lowercased, trimmed form."""
    with pytest.raises(GuidelineError) as caught:
        add(network, slug=" Masks In CT", title="t")
    assert str(caught.value).startswith("slug ' Masks In CT': use lowercase letters, digits and hyphens")


def test_a_slug_is_unique_and_unknown_ones_are_not_found(network):
    add(network)
    with pytest.raises(GuidelineError, match="already a guideline"):
        add(network, title="Other")
    with pytest.raises(GuidelineNotFound):
        update(network, slug="nope")
    with network.sessions() as session:
        assert session.scalar(select(Guideline.title)) == "Masks in CT rooms"


def test_the_list_shows_the_most_recently_changed_first(network):
    add(network, slug="masks-in-ct")
    add(network, slug="triage", title="Triage")
    update(network, slug="masks-in-ct")
    with network.sessions() as session:
        assert [g.slug for g in list_guidelines(session)] == ["masks-in-ct", "triage"]


# ---------------------------------------------------------------- library pages


@pytest.fixture
def client(network):
    return create_app(services=network).test_client()


def test_library_pages(client, network):
    assert "No guidelines yet" in client.get("/library/guidelines").get_data(as_text=True)
    add(network)
    update(network)
    listing = client.get("/library/guidelines").get_data(as_text=True)
    assert 'href="/library/guidelines/masks-in-ct"' in listing and "version 2" in listing
    page = client.get("/library/guidelines/masks-in-ct")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and V2 in text and V1 not in text
    assert "Gloves too." in text and "First version." in text
    assert 'href="/library/guidelines/masks-in-ct/v1"' in text and "(current)" in text
    old = client.get("/library/guidelines/masks-in-ct/v1").get_data(as_text=True)
    assert V1 in old and "not the current one" in old
    for path in ("/library/guidelines/masks-in-ct/v9", "/library/guidelines/nope", "/library/guidelines/masks-in-ct/vx"):
        assert client.get(path).status_code == 404


def test_guideline_pages_count_views_and_escape(client, network):
    add(network, body="<script>alert(1)</script>")
    for _ in range(3):
        client.get("/library/guidelines/masks-in-ct")
    client.head("/library/guidelines/masks-in-ct")
    with network.sessions() as session:
        assert session.scalar(select(Guideline.views)) == 3
    text = client.get("/library/guidelines/masks-in-ct").get_data(as_text=True)
    assert "<script>alert" not in text and "&lt;script&gt;" in text
    assert re.search(r"4 views", text)


# ---------------------------------------------------------------- JSON API


@pytest.fixture
def app(network):
    network.settings = network.settings.replace(api_token="t0ken")
    return create_app(services=network)


def test_api_lists_and_shows_guidelines_as_documented(app, network):
    add(network)
    update(network)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)

    def call(path, expected, **parameters):
        response = schema[path]["GET"].Case(path_parameters=parameters).call_and_validate(headers=AUTH, checks=CHECKS)
        assert response.status_code == expected, response.text
        return response.json()

    listing = call("/guidelines", 200)
    [item] = listing["guidelines"]
    assert (item["slug"], item["current"]["number"], item["current"]["changes"]) == ("masks-in-ct", 2, "Gloves too.")
    assert item["url"] == "https://relay.example.org/library/guidelines/masks-in-ct"
    one = call("/guidelines/{slug}", 200, slug="masks-in-ct")
    assert one["body"] == V2 and [v["number"] for v in one["versions"]] == [2, 1]
    assert one["versions"][1]["url"].endswith("/library/guidelines/masks-in-ct/v1")
    assert call("/guidelines/{slug}", 404, slug="nope")["error"]


def test_api_guidelines_are_public_like_the_library_pages(app, network):
    """Guidelines are published to everyone on /library/guidelines; the API reads them the same way,
    while a bad token is still refused rather than ignored."""
    client = app.test_client()
    assert client.get("/api/v1/guidelines").status_code == 200
    assert client.get("/api/v1/guidelines", headers=AUTH).status_code == 200
    assert client.get("/api/v1/guidelines", headers={"Authorization": "Bearer rly_nope"}).status_code == 401


# ---------------------------------------------------------------- command line


def test_cli_add_update_list(settings, network, monkeypatch, tmp_path):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("RELAY_PUBLIC_BASE_URL", "https://relay.example.org")
    runner = CliRunner()
    result = runner.invoke(main, ["guidelines", "list"])
    assert result.exit_code == 0 and "no guidelines" in result.output
    result = runner.invoke(main, ["guidelines", "add", "masks-in-ct", "--title", "Masks in CT rooms", "--body", V1,
                                  "--author", "jiwon@example.org"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "masks-in-ct v1 https://relay.example.org/library/guidelines/masks-in-ct"
    body = tmp_path / "v2.txt"
    body.write_text(V2, encoding="utf-8")
    result = runner.invoke(main, ["guidelines", "update", "masks-in-ct", "--body-file", str(body)])
    assert result.exit_code == 2 and "--changes" in result.output  # what changed is required
    result = runner.invoke(main, ["guidelines", "update", "masks-in-ct", "--body-file", str(body),
                                  "--changes", "Gloves too."])
    assert result.exit_code == 0 and "masks-in-ct v2 " in result.output and result.output.strip().endswith("/v2")
    result = runner.invoke(main, ["guidelines", "update", "nope", "--body", "x", "--changes", "y"])
    assert result.exit_code == 1 and "no guideline 'nope'" in result.output
    result = runner.invoke(main, ["guidelines", "add", "masks-in-ct", "--title", "Again", "--body", "x"])
    assert result.exit_code == 1 and "already a guideline" in result.output
    result = runner.invoke(main, ["guidelines", "add", "x", "--title", "No body"])
    assert result.exit_code == 2 and "--body" in result.output
    result = runner.invoke(main, ["guidelines", "list"])
    assert result.exit_code == 0 and re.search(r"masks-in-ct\tv2\t\d{4}-\d\d-\d\d\tMasks in CT rooms", result.output)
    with network.sessions() as session:
        assert current_version(get_guideline(session, "masks-in-ct")).body == V2


def test_cli_cases_drafts(settings, network, monkeypatch):
    from relay.library.cases import create_case

    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()
    assert "no draft cases" in runner.invoke(main, ["cases", "drafts"]).output
    with transaction(network.sessions) as session:
        create_case(session, "Intake by mail", draft=True)
    result = runner.invoke(main, ["cases", "drafts"])
    assert result.exit_code == 0 and re.search(r"C2\t.*\t0 image\(s\)\tIntake by mail", result.output)


NAMED = "Example: patient 김철수 환자, MRN 12345678, showed GGO in both lower lobes."


def test_a_guideline_naming_a_patient_is_not_published_until_confirmed(network):
    """Issue 16: a guideline goes to the library as it is written, so the guard reads it like a case: a title,
    text or what-changed line with an identifier is refused (nothing stored) until confirmed, audited."""
    from relay.guard.confirmation import IdentifiersFound
    from relay.model.tables import AuditEvent, GuidelineVersion

    with pytest.raises(IdentifiersFound) as refused:
        add(network, body=NAMED)
    assert {f["kind"] for f in refused.value.findings} == {"patient_name", "record_number"}
    assert {f["field"] for f in refused.value.findings} == {"body"} and "12345678" not in str(refused.value)
    with network.sessions() as session:
        assert session.scalars(select(Guideline)).all() == []
    add(network)
    with pytest.raises(IdentifiersFound):
        update(network, body=NAMED)
    with pytest.raises(IdentifiersFound):
        update(network, changes="Added the case of patient Jane Doe")
    with pytest.raises(IdentifiersFound):
        update(network, title="Masks (MRN 12345678)")
    with network.sessions() as session:
        assert [v.number for v in session.scalars(select(GuidelineVersion))] == [1]
        assert get_guideline(session, "masks-in-ct").title == "Masks in CT rooms"
    assert update(network, body=NAMED, confirm_identifiers=True) == 2
    with network.sessions() as session:
        confirmed = session.scalars(select(AuditEvent).where(AuditEvent.action == "guard.confirm")).all()
        assert [(e.subject, e.detail["kinds"]) for e in confirmed] == [("guideline:masks-in-ct",
                                                                       "patient_name,record_number")]


def test_the_cli_names_the_findings_and_takes_confirm_identifiers(settings, network, monkeypatch):
    monkeypatch.setenv("RELAY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("RELAY_BROKER_URL", "memory://")
    monkeypatch.setenv("RELAY_VAR_DIR", str(settings.var_dir))
    runner = CliRunner()
    refused = runner.invoke(main, ["guidelines", "add", "masks-in-ct", "--title", "Masks", "--body", NAMED])
    assert refused.exit_code == 1 and "record_number in the body" in refused.output
    assert "12345678" not in refused.output and "--confirm-identifiers" in refused.output
    added = runner.invoke(main, ["guidelines", "add", "masks-in-ct", "--title", "Masks", "--body", NAMED,
                                 "--confirm-identifiers"])
    assert added.exit_code == 0, added.output
    refused = runner.invoke(main, ["guidelines", "update", "masks-in-ct", "--body", NAMED, "--changes",
                                   "patient Jane Doe's case added"])
    assert refused.exit_code == 1 and "patient_name in the changes" in refused.output
    updated = runner.invoke(main, ["guidelines", "update", "masks-in-ct", "--body", NAMED, "--changes",
                                   "patient Jane Doe's case added", "--confirm-identifiers"])
    assert updated.exit_code == 0 and "masks-in-ct v2" in updated.output
