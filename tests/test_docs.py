"""The docs name everything a user can call (issue 15, item 4): every operation of the API's OpenAPI
description (webhooks/openapi.json) as `METHOD /path` and every `relay` command and subcommand as
`relay group command` must appear in README.md or docs/*.md. Other branches add routes and commands:
this fails with the list of what is missing and where to document it.

Paths are compared by shape: a parameter matches `<name>`, `{name}` or a concrete value (`/cases/C2/close`),
and the `/api/v1` prefix may be written or left out (docs/api.md lists routes relative to it)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest

import webhooks
from relay.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
METHODS = ("get", "put", "post", "patch", "delete")


def docs_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOCS)


def operations() -> list[tuple[str, str]]:
    document = json.loads((Path(webhooks.__file__).parent / "openapi.json").read_text(encoding="utf-8"))
    return sorted((method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method in METHODS)


def route_pattern(method: str, path: str) -> re.Pattern:
    """`METHOD /path` as written in the docs: parameters as <x>, {x} or a value, /api/v1 optional, and the
    path ending at a space, backtick, query string, pipe or end of line."""
    parts = []
    for segment in path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            parts.append(r"(?:<[^>/\s]+>|\{[^}/\s]+\}|[^/\s`|?]+)")
        else:
            parts.append(re.escape(segment))
    body = "/" + "/".join(parts)
    return re.compile(rf"\b{method}\s+(?:https?://[^\s/`]+)?(?:/api/v1)?{body}(?=[\s`?|)#,.;:]|$)", re.MULTILINE)


def commands(group: click.Group = main, prefix: str = "relay") -> list[str]:
    """Every command and subcommand, e.g. 'relay cases close' (hidden ones left out)."""
    found = []
    for name, command in sorted(group.commands.items()):
        if getattr(command, "hidden", False):
            continue
        path = f"{prefix} {name}"
        found.append(path)
        if isinstance(command, click.Group):
            found.extend(commands(command, path))
    return found


def test_the_lists_are_not_empty():
    """Guard against a test that checks nothing: the description and the CLI were found."""
    assert len(operations()) >= 20 and ("POST", "/notices/{notice_id}/cancel") in operations()
    assert "relay cases close" in commands() and "relay notice new-case" in commands()


def test_every_api_route_is_documented():
    text = docs_text()
    missing = [f"{method} {path}" for method, path in operations() if not route_pattern(method, path).search(text)]
    assert not missing, (
        f"{len(missing)} API operation(s) of webhooks/openapi.json are in no doc: {', '.join(missing)}. "
        "Add each as `METHOD /path` (e.g. `POST /cases/<number>/close`, relative to /api/v1) to a table in "
        "docs/api.md (or another docs/*.md or README.md).")


def test_every_relay_command_is_documented():
    text = docs_text()
    missing = [command for command in commands()
               if not re.search(rf"(?<![\w-]){re.escape(command)}(?![\w-])", text)]
    assert not missing, (
        f"{len(missing)} relay command(s) are in no doc: {', '.join(missing)}. Add each to the command table "
        "in README.md ('Command line') or to the docs/*.md page of its subject, written as `relay group command`.")


@pytest.mark.parametrize("written,method,path,found", [
    ("| `POST /cases/<number>/close` | staff |", "POST", "/cases/{number}/close", True),
    ("curl -X POST http://127.0.0.1:8000/api/v1/cases/C2/publish -H", "POST", "/cases/{number}/publish", True),
    ("| `GET /cases?q=&status=` |", "GET", "/cases", True),
    ("| `GET /cases/<number>/posts` |", "GET", "/cases/{number}", False),  # a longer path is another route
    ("| `POST /cases/<number>/publish` |", "POST", "/cases/{number}/close", False),
    ("| `GET /cases/<number>/close` |", "POST", "/cases/{number}/close", False),  # another method
])
def test_the_route_matcher(written, method, path, found):
    assert bool(route_pattern(method, path).search(written)) is found


@pytest.mark.parametrize("path,stale", [
    ("docs/notices.md", "There is no web\nconsole yet"),  # the console composes, previews and sends notices
    ("docs/notices.md", "no web console"),
    ("docs/library.md", "bearer token, like the other `/api/v1/` routes"),  # the guidelines API is open
    ("docs/api.md", "Guidelines endpoints are added by the guidelines work"),  # they are in its tables now
    ("docs/architecture.md", "`cancelled` is named in the model, but nothing sets it yet"),
    ("docs/email.md", "not yet filed"),  # image attachments are filed in the library
])
def test_no_stale_claims(path, stale):
    """Sentences the docs once said that the code contradicts (issue 15, item 4)."""
    assert stale not in (ROOT / path).read_text(encoding="utf-8"), f"{path} still says {stale!r}: it is not true"
