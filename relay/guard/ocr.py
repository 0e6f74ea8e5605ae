"""Text burned into an image (many chest radiographs carry the patient's name and id in their pixels), read
with Tesseract (Debian's `tesseract-ocr` with `tesseract-ocr-kor`, English and Korean) so that the guard can
scan it like any message.

Tesseract is called as its command-line program over stdin/stdout, with a timeout: no Python wrapper is
needed for one call, and the program is the part the distribution installs and updates. When it is not
installed, nothing is read and one clear log line says so (images are then filed unchecked)."""
from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass

log = logging.getLogger(__name__)

LANGUAGES = "eng+kor"
TIMEOUT_SECONDS = 60
_warned = False


def available() -> bool:
    return shutil.which("tesseract") is not None


@dataclass(frozen=True)
class Word:
    """One word Tesseract read, where it stands: its box in pixels and its line (block, paragraph, line)."""

    text: str
    left: int
    top: int
    width: int
    height: int
    line: tuple[int, int, int]


def _run(data: bytes, languages: str, *config: str) -> str | None:
    """Tesseract's output for the image (PNG/JPEG bytes), or None when it cannot run (logged)."""
    global _warned
    if not available():
        if not _warned:
            log.warning("guard: tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-kor): "
                        "images are filed without reading the text burned into them")
            _warned = True
        return None
    try:
        done = subprocess.run(["tesseract", "stdin", "stdout", "-l", languages, *config], input=data,
                              capture_output=True, timeout=TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("guard: tesseract failed (%s): the image is filed without reading its text", exc)
        return None
    if done.returncode != 0:
        log.warning("guard: tesseract exited %s (%s): the image is filed without reading its text",
                    done.returncode, done.stderr.decode(errors="replace").strip()[:200])
        return None
    return done.stdout.decode(errors="replace")


def read_text(data: bytes, languages: str = LANGUAGES) -> str | None:
    """The text Tesseract reads in the image (PNG/JPEG bytes), or None when it cannot run."""
    return _run(data, languages)


def read_words(data: bytes, languages: str = LANGUAGES) -> list[Word] | None:
    """The words Tesseract reads in the image, each with its box, in reading order (its `tsv` output: level 5
    rows are words); None when it cannot run."""
    out = _run(data, languages, "tsv")
    if out is None:
        return None
    words = []
    for row in out.splitlines()[1:]:
        cells = row.split("\t")
        if len(cells) != 12 or cells[0] != "5" or not cells[11].strip():
            continue
        block, paragraph, line, left, top, width, height = (int(c) for c in (*cells[2:5], *cells[6:10]))
        words.append(Word(cells[11].strip(), left, top, width, height, (block, paragraph, line)))
    return words
