"""Where image files are kept: a small port (put, get, exists, delete) so an object store can be added
later beside the local directory. Names are relative, made by relay (content hashes), never by a
sender; the local store still refuses any name that would leave its root."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol


class MediaStore(Protocol):
    def put(self, name: str, data: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None: ...


class MediaNotFound(LookupError):
    pass


class LocalMediaStore:
    """Files under one directory. Writes go to a temporary file of their own (mkstemp: unique per
    writer, thread or process) renamed into place, so a reader never sees half a file and two
    writers of the same (content-addressed) name agree: the last rename wins with the same bytes."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()) or not name or name.startswith("/"):
            raise ValueError(f"bad media name {name!r}")
        return path

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the files are served like any other
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            raise MediaNotFound(name) from None

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def delete(self, name: str) -> None:
        """Remove a file (a blacked-out image's original); one already gone is no error."""
        self._path(name).unlink(missing_ok=True)


def media_store_for(settings) -> MediaStore:
    """The store the settings choose (only the local directory so far: RELAY_MEDIA_DIR)."""
    return LocalMediaStore(settings.media_root)
