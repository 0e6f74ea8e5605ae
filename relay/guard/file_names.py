"""The guard over a file's name (issue 16): an image's name is shown to every reader of the library (the image's
alt text), so "홍길동 환자 CXR.jpg" or "MRN_12345678.png" reaches them as surely as text burned into the pixels.

A name is read as words: underscores as spaces (cameras and PACS exports join words with them, which hid the
guard's labels, "환자", "MRN", from it) and without its extension; then the guard scans it like any text."""
from __future__ import annotations

from relay.guard import scan


def kinds_in_file_name(name: str | None) -> list[str]:
    """The kinds of identifier the guard finds in a file's name ([] for none)."""
    if not name:
        return []
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return scan(stem.replace("_", " ")).kinds
