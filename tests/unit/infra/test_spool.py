"""The spool for webhooks the database could not take (relay/infra/spool.py) and its replay
(relay/inbound/spool_replay.py): whole files or none, bounded, a corrupt or partial entry set aside with a
log line (never a crash), and a replay that stores each webhook once however often it runs."""
from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from relay.inbound.spool_replay import ReplayReport, replay, replay_spool
from relay.infra.dispatch import RecordingDispatcher
from relay.infra.spool import SET_ASIDE, Entry, Spool, SpoolFull
from relay.model.tables import InboundEvent
from relay.services import build_services
from tests.conftest import make_settings

DOWN = "postgresql+psycopg://nobody@127.0.0.1:1/none"  # nothing listens on port 1: refused at once


def entry(key: str, kind: str = "sms", received_at: datetime | None = None) -> Entry:
    return Entry(provider="twilio", kind=kind, dedupe_key=key, raw=f"MessageSid={key}&Body=hello",
                 sender="+821012345602", received_at=received_at or datetime.now(timezone.utc))


def events(services) -> list[InboundEvent]:
    with services.sessions() as session:
        return list(session.scalars(select(InboundEvent).order_by(InboundEvent.id)))


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool", max_bytes=1024 * 1024, max_files=100)


# ---- writing


def test_an_entry_is_one_complete_file_and_no_temporary_is_left(spool):
    path = spool.append(entry("SM1"))
    assert path.parent == spool.directory and path.name.endswith(".json")
    assert sorted(os.listdir(spool.directory)) == [path.name]  # renamed into place: no temp file
    assert spool.read(path) == spool.read(spool.entries()[0])
    assert spool.read(path).dedupe_key == "SM1"
    depth = spool.depth()
    assert (depth.files, depth.bytes) == (1, path.stat().st_size)


def test_a_file_being_written_is_not_an_entry(spool):
    spool.append(entry("SM1"))
    (spool.directory / ".00000000000000000001-99-abcd.json.tmp").write_text('{"v": 1, "provider": "tw')
    assert [spool.read(p).dedupe_key for p in spool.entries()] == ["SM1"]
    assert spool.depth().files == 1


def test_a_failed_write_leaves_nothing_behind(spool, monkeypatch):
    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        spool.append(entry("SM1"))
    assert os.listdir(spool.directory) == []


def test_entries_come_back_oldest_first(spool):
    for key in ("SM3", "SM1", "SM2"):
        spool.append(entry(key))
    assert [spool.read(p).dedupe_key for p in spool.entries()] == ["SM3", "SM1", "SM2"]


def test_the_spool_is_bounded_in_files(tmp_path):
    spool = Spool(tmp_path / "spool", max_bytes=1024 * 1024, max_files=3)
    for n in range(3):
        spool.append(entry(f"SM{n}"))
    with pytest.raises(SpoolFull, match="3 files"):
        spool.append(entry("SM3"))
    assert spool.depth().files == 3


def test_the_spool_is_bounded_in_bytes(tmp_path):
    size = Spool(tmp_path / "probe", 10**6, 10).append(entry("SM0")).stat().st_size
    spool = Spool(tmp_path / "spool", max_bytes=2 * size + size // 2, max_files=100)
    spool.append(entry("SM1"))
    spool.append(entry("SM2"))
    with pytest.raises(SpoolFull, match="bytes"):
        spool.append(entry("SM3"))
    assert spool.depth().bytes == 2 * size


def test_the_bound_counts_what_other_processes_spooled(tmp_path, monkeypatch):
    """Two web processes (two Spool objects) share one directory and one bound; each rescans the
    directory at most every USAGE_TTL seconds (here at once)."""
    import relay.infra.spool

    monkeypatch.setattr(relay.infra.spool, "USAGE_TTL", 0.0)
    one, two = (Spool(tmp_path / "spool", max_bytes=1024 * 1024, max_files=2) for _ in range(2))
    one.append(entry("SM1"))
    two.append(entry("SM2"))
    with pytest.raises(SpoolFull):
        one.append(entry("SM3"))
    assert one.depth().files == 2


def test_depth_reports_the_oldest_entry(spool):
    path = spool.append(entry("SM1"))
    past = time.time() - 120
    os.utime(path, (past, past))
    spool.append(entry("SM2"))
    assert 119 <= spool.depth().oldest_seconds < 200
    assert Spool(spool.directory / "never-made", 1, 1).depth().files == 0


# ---- replay


@pytest.fixture
def live(tmp_path, database_url):
    services = build_services(make_settings(tmp_path / "var", database_url), dispatcher=RecordingDispatcher(),
                              senders={})
    yield services
    services.dispose()


def test_replay_stores_each_entry_once_and_keeps_its_time(live, spool):
    when = datetime.now(timezone.utc) - timedelta(minutes=3)
    spool.append(entry("SM1", received_at=when))
    spool.append(entry("SM1:delivered", kind="status"))
    report = replay(live, spool)
    assert (report.stored, report.duplicates, report.left) == (2, 0, 0)
    assert spool.entries() == []
    rows = events(live)
    assert [(r.kind, r.dedupe_key, r.outcome) for r in rows] == [("sms", "SM1", "received"),
                                                                 ("status", "SM1:delivered", "received")]
    assert abs(rows[0].received_at - when) < timedelta(seconds=1)
    assert live.dispatcher.inbound == [rows[0].id] and live.dispatcher.statuses == [rows[1].id]


def test_replay_is_idempotent(live, spool):
    """The same webhook spooled twice (a file replayed but not yet removed when a process died, or
    Twilio's own retry), or already stored: one event, handed over once."""
    spool.append(entry("SM1"))
    assert replay(live, spool).stored == 1
    spool.append(entry("SM1"))
    spool.append(entry("SM1"))
    report = replay(live, spool)
    assert (report.stored, report.duplicates) == (0, 2)
    assert [r.dedupe_key for r in events(live)] == ["SM1"]
    assert live.dispatcher.inbound == [events(live)[0].id]
    assert replay(live, spool).stored == 0 and spool.entries() == []


def test_a_corrupt_entry_is_set_aside_with_a_log_line_and_the_rest_replayed(live, spool, caplog):
    spool.append(entry("SM1"))
    spool.directory.joinpath("00000000000000000002-1-aaaa.json").write_bytes(b'{"v": 1, "provider": "twi')
    spool.directory.joinpath("00000000000000000003-1-bbbb.json").write_text(json.dumps({"v": 1, "kind": "sms"}))
    spool.directory.joinpath("00000000000000000004-1-cccc.json").write_bytes(b"\xff\xfe not json")
    spool.append(entry("SM2"))
    with caplog.at_level(logging.ERROR, logger="relay.infra.spool"):
        report = replay(live, spool)
    assert (report.stored, report.set_aside, report.left) == (2, 3, 0)
    assert sorted(r.dedupe_key for r in events(live)) == ["SM1", "SM2"]
    assert spool.entries() == []
    assert sorted(os.listdir(spool.directory / SET_ASIDE)) == [
        "00000000000000000002-1-aaaa.json", "00000000000000000003-1-bbbb.json", "00000000000000000004-1-cccc.json"]
    assert caplog.text.count("set aside") == 3 and "not JSON" in caplog.text and "incomplete" in caplog.text


def test_a_partial_write_left_by_a_dead_writer_is_set_aside_not_replayed(live, spool, caplog):
    spool.directory.mkdir(parents=True)
    partial = spool.directory / ".00000000000000000001-99-abcd.json.tmp"
    partial.write_text('{"v": 1, "provider": "twilio", "kind": "sms", "dedupe_key": "SM9"')
    fresh = spool.directory / ".00000000000000000002-98-abcd.json.tmp"  # a writer still at work
    fresh.write_text('{"v": 1')
    past = time.time() - 300
    os.utime(partial, (past, past))
    spool.append(entry("SM1"))
    with caplog.at_level(logging.ERROR, logger="relay.infra.spool"):
        report = replay(live, spool)
    assert (report.stored, report.set_aside) == (1, 1)
    assert os.listdir(spool.directory / SET_ASIDE) == ["00000000000000000001-99-abcd.json.tmp"]
    assert fresh.exists() and "partial write" in caplog.text
    assert [r.dedupe_key for r in events(live)] == ["SM1"]


def test_replay_waits_while_the_database_is_down(tmp_path, spool):
    down = build_services(make_settings(tmp_path / "var", DOWN), dispatcher=RecordingDispatcher(), senders={})
    try:
        spool.append(entry("SM1"))
        spool.append(entry("SM2"))
        report = replay(down, spool)
    finally:
        down.dispose()
    assert (report.stored, report.set_aside, report.left) == (0, 0, 2)
    assert len(spool.entries()) == 2 and down.dispatcher.inbound == []


def test_an_entry_the_database_refuses_is_set_aside(live, spool, caplog):
    """Not an outage: the database answers, and refuses this entry (here a NUL byte PostgreSQL will
    not store in text; SQLite stores it). Retrying would refuse it forever, so it is set aside."""
    spool.append(Entry(provider="twilio", kind="sms", dedupe_key="SM\x00bad", raw="x", sender="",
                       received_at=datetime.now(timezone.utc)))
    spool.append(entry("SM2"))
    with caplog.at_level(logging.ERROR, logger="relay.infra.spool"):
        report = replay(live, spool)
    keys = sorted(r.dedupe_key for r in events(live))
    if live.engine.dialect.name == "postgresql":
        assert (report.stored, report.set_aside) == (1, 1) and keys == ["SM2"]
        assert "the database refused it" in caplog.text
    else:
        assert report.stored == 2 and len(keys) == 2
    assert spool.entries() == []


def test_the_sweepers_replay_uses_the_hosts_spool(live):
    """workers/tasks.py's sweep calls replay_spool first: nothing to do is cheap, entries are stored."""
    assert replay_spool(live) == ReplayReport()
    live.spool.append(entry("SM1"))
    assert replay_spool(live).stored == 1
    assert live.spool.entries() == [] and [r.dedupe_key for r in events(live)] == ["SM1"]
