"""relay.inbound.reply_text.visible_text against the reply corpus in tests/data/replies/ (see SOURCES.md there).

Each sample is `<name>.txt` (a plain-text body) or `<name>.html` (an HTML-only body) with
`<name>.expected`, the exact text the sender wrote.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from relay.inbound.reply_text import html_to_text, visible_text
from tests import paths

CORPUS = paths.DATA / "replies"
SAMPLES = sorted(p for p in CORPUS.iterdir() if p.suffix in (".txt", ".html"))


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def _visible(path: Path) -> str:
    body = _read(path)
    return visible_text("", body) if path.suffix == ".html" else visible_text(body)


def test_corpus_is_complete():
    assert len(SAMPLES) >= 24
    for sample in SAMPLES:
        assert sample.with_suffix(".expected").is_file(), f"{sample.name} has no .expected"
    assert (CORPUS / "SOURCES.md").is_file()
    listed = _read(CORPUS / "SOURCES.md")
    for sample in SAMPLES:
        assert f"`{sample.stem}`" in listed, f"{sample.stem} is not in SOURCES.md"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_corpus(sample: Path):
    assert _visible(sample) == _read(sample.with_suffix(".expected"))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_idempotent(sample: Path):
    once = _visible(sample)
    assert visible_text(once) == once


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s.suffix == ".txt"], ids=lambda p: p.name)
def test_crlf_and_trailing_whitespace_do_not_matter(sample: Path):
    body = _read(sample).replace("\r\n", "\n")
    crlf = "\r\n".join(line + " " * (n % 2) for n, line in enumerate(body.split("\n")))
    assert visible_text(crlf) == _visible(sample)


@pytest.mark.parametrize("text", [
    "Agree.",
    "Agree — organising pneumonia pattern, suggest follow-up CT in 4 weeks.",
    "Agree with the report.\n\nTwo points:\n- RUL nodule stable\n- small left effusion",
    "  \n\nLine one\nLine two\n\n\nLine after two blank lines\n  ",
    "동의합니다.\n4주 후 추적 CT 권합니다.",
    "Thanks, will book the CT for Friday.",
    "Take a look at series 4.\nKhan et al. describe it.\nTake care with the contrast.",
    "Sent from the reading room, the PACS is down again.",
    "Warning: contrast allergy, please premedicate.\nMessage the ward first.",
])
def test_text_without_quote_returns_itself_trimmed(text: str):
    assert visible_text(text) == text.strip()


@pytest.mark.parametrize("text", [
    "> only a quote\n> nothing new",
    "On Tue, Mar 3, 2020 at 9:00 AM Kim <kim@example.org> wrote:\n> quoted only",
    "-----Original Message-----\nFrom: Kim\nSent: Tuesday\nTo: Lee\nSubject: C-1\n\nHistory only.",
    "Sent from my iPhone",
])
def test_never_empty_when_something_was_written(text: str):
    result = visible_text(text)
    assert result
    assert visible_text(result) == result


def test_everything_quoted_returns_the_original_trimmed():
    text = "\n> New case C-1\n> details\n\n"
    assert visible_text(text) == text.strip()


def test_empty_input():
    assert visible_text("") == ""
    assert visible_text("   \n ") == ""
    assert visible_text("", "") == ""
    assert visible_text("", "<html><body><div><br></div></body></html>") == ""


def test_text_part_wins_over_html():
    assert visible_text("From the text part.", "<p>From the HTML part.</p>") == "From the text part."


def test_html_used_when_text_is_blank():
    assert visible_text(" \r\n", "<div>Agree.</div><blockquote>old</blockquote>") == "Agree."


def test_html_to_text_keeps_author_lines_and_drops_quotes():
    html = ("<div>First line<br>second line</div><div><br></div><ul><li>item one</li><li>item two</li></ul>"
            "<blockquote type='cite'><div>quoted</div><blockquote>deeper</blockquote><div>still quoted</div>"
            "</blockquote><div>after the quote</div><script>var x = 1;</script>")
    assert html_to_text(html) == "First line\nsecond line\n\n- item one\n- item two\nafter the quote"


def test_inline_answers_below_a_top_posted_line_are_kept():
    text = ("See answers below.\n\nOn Tue, Mar 3, 2020 at 9:00 AM Kim <kim@example.org> wrote:\n"
            "> Is it new?\nYes.\n> Size?\n6 mm.\n")
    assert visible_text(text) == "See answers below.\n\nYes.\n\n6 mm."


def test_outlook_history_is_never_taken_for_an_answer():
    text = ("Agree.\n\nFrom: Kim <kim@example.org>\nSent: Tuesday, March 3, 2020 9:00 AM\nTo: Lee\n"
            "Subject: C-1\n\nOlder text.\n\nOn Mon, Mar 2, 2020 at 8:00 AM Lee <lee@example.org> wrote:\n"
            "> even older\nunquoted line from the older message\n")
    assert visible_text(text) == "Agree."
