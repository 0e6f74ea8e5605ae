"""A worker process's rendered notice-email templates, kept across the batches of a broadcast.

bulk.NoticeEmails renders a notice's email once per language with placeholders and fills in each
recipient; before this cache it did so again for every batch of 100, and that rendering was about 30 %
of a broadcast's worker time (a profile of 37 batches: 74 renders of ~70 ms). Keyed by the settings
object, the notice (id, kind, title, body, severity, send time), its post and the language; at most
SIZE entries, each kept TTL seconds, so memory stays flat and an edit to the case while a broadcast is
going out shows in the batches rendered after at most TTL seconds (as before, a batch at a time)."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Hashable

SIZE = 64
TTL = 300.0


class TemplateCache:
    def __init__(self, size: int = SIZE, ttl: float = TTL, clock: Callable[[], float] = time.monotonic):
        self.size, self.ttl, self.clock = size, ttl, clock
        self._entries: OrderedDict[Hashable, tuple[object, float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.renders = 0

    def get(self, settings: object, key: Hashable, render: Callable[[], Any]) -> Any:
        """The cached value for (settings, key), or render() kept for next time."""
        full = (id(settings), key)
        now = self.clock()
        with self._lock:
            entry = self._entries.get(full)
            if entry is not None and entry[0] is settings and now - entry[1] < self.ttl:
                self._entries.move_to_end(full)
                return entry[2]
        value = render()
        with self._lock:
            self.renders += 1
            self._entries[full] = (settings, now, value)
            self._entries.move_to_end(full)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value


NOTICE_TEMPLATES = TemplateCache()


def notice_key(notice, post_id: int | None, language: str | None) -> tuple:
    """What a notice's email template depends on besides the settings (see the module docstring)."""
    return (notice.id, post_id, language or "en", notice.kind, notice.title, notice.body, notice.severity,
            notice.sent_at, notice.created_at, notice.case_id, notice.corrects_notice_id)
