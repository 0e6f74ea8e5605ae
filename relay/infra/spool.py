"""A durable local spool for verified webhooks the database could not take.

Twilio retries a webhook only when it cannot connect (its default retry policy), so a 503 while
PostgreSQL is down loses the text. Instead the web keeps the already-verified request here and
answers 200; relay/inbound/spool_replay.py stores it in the database when it is back.

One JSON file per request, written under a temporary name (a leading dot), fsynced, renamed into
place and the directory fsynced: a file either is complete and durable or is not there, and
several web processes can write side by side without locks. Names start with the time in
nanoseconds, so sorting them replays in arrival order. The spool is bounded in files and bytes;
when full it refuses (SpoolFull) and the webhook gets 503 as before."""
from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".json"
SET_ASIDE = "set-aside"  # entries that cannot be replayed, kept for a person to look at
STALE_TEMP_SECONDS = 60.0
USAGE_TTL = 1.0  # seconds a process trusts its last count of the spool (plus its own appends) for the bound  # a temporary file this old belongs to a writer that died before its rename
FIELDS = ("provider", "kind", "dedupe_key", "raw", "sender")


class SpoolFull(Exception):
    """The spool holds its limit of files or bytes: nothing more is accepted until it drains."""


class CorruptEntry(ValueError):
    """A spool file that is not a complete entry (truncated, edited, from another version)."""


@dataclass(frozen=True)
class Depth:
    files: int
    bytes: int
    oldest_seconds: float  # age of the oldest entry, 0 when empty


@dataclass(frozen=True)
class Entry:
    """What store_inbound needs to keep the webhook, as it would have at the edge."""

    provider: str
    kind: str
    dedupe_key: str
    raw: str
    sender: str
    received_at: datetime

    def fields(self) -> dict:
        return {"provider": self.provider, "kind": self.kind, "dedupe_key": self.dedupe_key, "raw": self.raw,
                "sender": self.sender, "received_at": self.received_at}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, directory: Path, max_bytes: int, max_files: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_files = max_files
        self._counted = (-USAGE_TTL, 0, 0)  # (when, files, bytes) of the last scan, plus our appends since

    # ---- writing (the web, database down)

    def append(self, entry: Entry) -> Path:
        """Keep the entry durably; returns its file. Raises SpoolFull, or OSError when the disk refuses."""
        data = json.dumps({"v": 1, **{name: getattr(entry, name) for name in FIELDS},
                           "received_at": entry.received_at.isoformat()}).encode()
        self.directory.mkdir(parents=True, exist_ok=True)
        files, size = self._usage()
        if files >= self.max_files or size + len(data) > self.max_bytes:
            raise SpoolFull(f"spool {self.directory} holds {files} files, {size} bytes "
                            f"(limits {self.max_files} files, {self.max_bytes} bytes)")
        name = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        temp = self.directory / f".{name}.tmp"
        final = self.directory / name
        try:
            with open(temp, "xb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.rename(temp, final)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)
        self._counted = (self._counted[0], files + 1, size + len(data))
        return final

    def _usage(self) -> tuple[int, int]:
        """(files, bytes) for the bound: a directory scan costs a stat per file (60 ms at 20,000), so
        each process rescans at most every USAGE_TTL seconds and counts its own appends in between.
        Several processes may each add a second's worth past the limit: the bound is that loose."""
        counted_at, files, size = self._counted
        now = time.monotonic()
        if now - counted_at >= USAGE_TTL:
            depth = self.depth()
            files, size = depth.files, depth.bytes
            self._counted = (now, files, size)
        return files, size

    # ---- reading (replay, /metrics, /healthz)

    def entries(self) -> list[Path]:
        """Complete entries, oldest first (temporary files of writers in progress are not entries)."""
        try:
            names = [e.name for e in os.scandir(self.directory)
                     if e.name.endswith(SUFFIX) and not e.name.startswith(".") and e.is_file()]
        except FileNotFoundError:
            return []
        return [self.directory / name for name in sorted(names)]

    def depth(self) -> Depth:
        files = size = 0
        oldest = None
        try:
            scan = list(os.scandir(self.directory))
        except FileNotFoundError:
            return Depth(0, 0, 0.0)
        for item in scan:
            if not item.name.endswith(SUFFIX) or item.name.startswith("."):
                continue
            try:
                stat = item.stat()
            except FileNotFoundError:  # replayed meanwhile
                continue
            files += 1
            size += stat.st_size
            oldest = stat.st_mtime if oldest is None else min(oldest, stat.st_mtime)
        return Depth(files, size, max(0.0, time.time() - oldest) if oldest is not None else 0.0)

    def read(self, path: Path) -> Entry:
        """The entry in a file; CorruptEntry when it is not a whole, well-formed one."""
        try:
            record = json.loads(path.read_bytes())
            if not isinstance(record, dict) or record.get("v") != 1:
                raise CorruptEntry("not a version 1 spool entry")
            values = {name: record[name] for name in FIELDS}
            if not all(isinstance(value, str) for value in values.values()) or not values["dedupe_key"]:
                raise CorruptEntry("a field is missing or not text")
            received_at = datetime.fromisoformat(record["received_at"])
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptEntry(f"not JSON ({exc})") from exc
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CorruptEntry):
                raise
            raise CorruptEntry(f"incomplete ({type(exc).__name__}: {exc})") from exc
        if received_at.tzinfo is None:
            received_at = received_at.replace(tzinfo=timezone.utc)
        return Entry(received_at=received_at, **values)

    def remove(self, path: Path) -> None:
        """Forget an entry once the database holds it (committed)."""
        try:
            path.unlink()
        except FileNotFoundError:  # another process replayed it too; the database kept it once
            return
        _fsync_dir(self.directory)

    def set_aside(self, path: Path, reason: str) -> None:
        """Move an entry that cannot be replayed out of the way, with a log line; never delete it."""
        target = self.directory / SET_ASIDE
        target.mkdir(exist_ok=True)
        try:
            os.rename(path, target / path.name.lstrip("."))
        except FileNotFoundError:
            return
        _fsync_dir(self.directory)
        log.error("spool: %s set aside in %s: %s", path.name, target, reason)

    def set_aside_stale_temporaries(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """A temporary file whose writer died before the rename: never acknowledged, so never
        promised; set aside (not replayed) so a person can see what was cut short."""
        moved = 0
        now = time.time()
        try:
            scan = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for item in scan:
            if item.name.startswith(".") and item.name.endswith(".tmp"):
                try:
                    if now - item.stat().st_mtime < older_than:
                        continue
                except FileNotFoundError:
                    continue
                self.set_aside(Path(item.path), "a partial write (its writer stopped before finishing)")
                moved += 1
        return moved
