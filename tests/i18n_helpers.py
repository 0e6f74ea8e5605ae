"""Checks that a page speaks Korean (issue 21), shared by the web tests and the browser tests: the text a
reader sees holds Hangul and none of the English UI strings of the catalogue."""
from __future__ import annotations

import re
from html.parser import HTMLParser

from babel.messages.pofile import read_po

from relay.render import i18n

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})


class _Visible(HTMLParser):
    """The text a reader sees, and the attributes a browser shows (placeholder, alt, title, aria-label);
    without scripts, styles and code (commands, file formats), and without content marked as another language (`lang="en"` on a
    preview of an English message, or on the language switch's "English")."""

    def __init__(self, language: str):
        super().__init__()
        self.language = language
        self.parts: list[str] = []
        self._open: list[tuple[str, bool]] = []  # (tag, hidden) of the elements open

    def _hidden(self) -> bool:
        return any(hidden for _tag, hidden in self._open)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        lang = attrs.get("lang")
        hidden = tag in ("style", "script", "code") or (tag != "html" and lang is not None
                                                  and not lang.startswith(self.language))
        if tag not in VOID:
            self._open.append((tag, hidden))
        if not hidden and not self._hidden():
            self.parts += [v for k, v in attrs.items() if k in ("placeholder", "alt", "title", "aria-label") and v]

    def handle_endtag(self, tag):
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break

    def handle_data(self, data):
        if not self._hidden():
            self.parts.append(data)


def visible(page: str, language: str = "ko") -> str:
    parser = _Visible(language)
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def english_ui_strings(language: str = "ko") -> list[str]:
    """The English fragments of every catalogue string translated differently in `language` (split at
    placeholders and markup), that could show on a page; acronyms (SMS, MMS) may stay beside a translation."""
    with (i18n.TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as f:
        catalogue = read_po(f, locale=language)
    fragments = set()
    for message in catalogue:
        if not message.id:
            continue
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        strings = [message.string] if isinstance(message.string, str) else list(message.string)
        if set(ids) <= set(strings):
            continue  # the same in both languages (SMS, API)
        for text in ids:
            for fragment in re.split(r"%\(\w+\)[sd]|<[^>]+>|%\w", text):
                fragment = fragment.strip(" .:,()…\"'")
                if (re.search(r"[A-Za-z]{2}", fragment) and not re.fullmatch(r"[A-Z]{2,4}", fragment)  # not "SMS"
                        and fragment not in BRANDS):
                    fragments.add(fragment)
    return sorted(fragments)


BRANDS = frozenset({"WhatsApp"})  # names that read the same in every language


def assert_korean(page: str) -> None:
    text = re.sub(r"https?://\S+|\S+@\S+", " ", visible(page))  # links and addresses are not UI text
    text = re.sub(r"\b[a-z_]+(?:\.[a-z_]+)+\b", " ", text)  # nor audit action names (notice.send)
    assert re.search(r"[\uac00-\ud7a3]", text), text[:300]
    left = [f for f in english_ui_strings() if re.search(rf"(?<![A-Za-z]){re.escape(f)}(?![A-Za-z])", text)]
    assert not left, f"English UI strings on a Korean page: {left}\n{text[:2000]}"
    assert '<html lang="ko">' in page
