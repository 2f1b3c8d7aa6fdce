"""The JSONL audit sink (no Kafka configured) and the spool file underneath the Kafka sink."""

from __future__ import annotations

import json
import os
from pathlib import Path

from proxy.audit import JsonlAuditSink, build_audit
from proxy.config import AuditConfig
from proxy.schemas.events import validation_errors
from proxy.spool import Spool
from tests.test_audit_kafka import make_event


async def test_jsonl_sink_writes_valid_events_and_flushes_on_close(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "events.jsonl"
    sink = build_audit(AuditConfig(jsonl_path=str(path)))
    assert isinstance(sink, JsonlAuditSink) and sink.destination == f"jsonl:{path}"
    await sink.start()
    emitted = [make_event(i) for i in range(50)]
    for event in emitted:
        sink.emit(event)
    sink.emit({"request_id": "odd", "value": {1}})  # unserialisable bits are stringified, never raised
    await sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["event_id"] for e in lines[:50]] == [e["event_id"] for e in emitted]
    assert all(validation_errors(e) == [] for e in lines[:50])
    assert lines[50]["value"] == "{1}"
    assert sink.state()["backend"] == "jsonl" and sink.state()["ok"] is True


def _lines(*seqs: int) -> list[bytes]:
    return [json.dumps({"request_id": f"r{s}", "seq": s}).encode() + b"\n" for s in seqs]


def test_spool_append_read_commit_and_reset(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "topic/with:odd chars", fsync="always")
    spool.open()
    assert spool.path.name == "topic_with_odd_chars.000000.spool" and spool.depth == 0
    assert spool.append(_lines(0, 1, 2, 3, 4)) == 5 and spool.depth == 5
    lines, ends = spool.read(2)
    assert [json.loads(x)["seq"] for x in lines] == [0, 1] and ends[-1] == (0, len(b"".join(_lines(0, 1))))
    spool.commit(ends[-1], 2)
    assert spool.depth == 3 and spool.offset_path.read_text().strip() == f"0 {ends[-1][1]}"
    lines, ends = spool.read(10)
    assert [json.loads(x)["seq"] for x in lines] == [2, 3, 4]
    spool.commit(ends[-1], 3)  # all acknowledged
    assert spool.depth == 0 and spool.size_bytes == 0 and spool.read(10) == ([], [])
    assert spool.offset_path.read_text().strip() == f"0 {ends[-1][1]}"
    spool.close()


def test_spool_survives_reopen_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "t", fsync="batch")
    spool.open()
    spool.append(_lines(0, 1, 2))
    lines, ends = spool.read(1)
    spool.commit(ends[0], 1)
    spool.close()
    with open(spool.path, "ab") as fh:  # a crash in the middle of an append (then the preallocated zeros)
        fh.write(b'{"request_id": "r3", "se' + b"\0" * 100)
    again = Spool(tmp_path, "t")
    again.open()
    assert again.depth == 2
    assert [json.loads(x)["seq"] for x in again.read(10)[0]] == [1, 2]
    again.append(_lines(3))
    assert [json.loads(x)["seq"] for x in again.read(10)[0]] == [1, 2, 3]
    again.close()


def test_spool_offset_past_end_after_crash_during_reset(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "t")
    spool.open()
    spool.close()
    spool.offset_path.write_text("0 12345\n")  # truncated file, offset not yet rewritten
    again = Spool(tmp_path, "t")
    again.open()
    again.append(_lines(7))
    assert [json.loads(x)["seq"] for x in again.read(10)[0]] == [7]
    again.close()


def test_spool_rolls_segments_and_deletes_acknowledged_ones(tmp_path: Path) -> None:
    """Under steady load the log never empties: segments keep it from growing without bound."""
    spool = Spool(tmp_path, "t", segment_bytes=100)
    spool.open()
    spool.append(_lines(0, 1, 2))
    seq = 3
    for _ in range(20):  # append a little, send a little, never fully caught up
        spool.append(_lines(seq, seq + 1, seq + 2))
        seq += 3
        spool.maintain()
        lines, ends = spool.read(3)
        spool.commit(ends[-1], len(lines))
    segments = sorted(tmp_path.glob("t.*.spool"))
    assert spool.depth == 3 and len(segments) <= 3  # 63 events written, ~1.9 kB: one file would hold them all
    assert sum(p.stat().st_size for p in segments) < 300
    spool.close()
    again = Spool(tmp_path, "t")  # a restart reads from the acknowledged position, across segments
    again.open()
    got = []
    while again.depth:
        again.maintain()
        lines, ends = again.read(3)
        if lines:
            got += [json.loads(x)["seq"] for x in lines]
            again.commit(ends[-1], len(lines))
    assert got == list(range(60, 63))
    again.close()


def test_spool_size_limit_and_lock(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "t", max_bytes=100)
    spool.open()
    assert spool.append(_lines(*range(10))) == 3  # ~30 bytes each: the rest is refused
    other = Spool(tmp_path, "t")  # a second proxy on the same directory
    other.open()
    assert other.path != spool.path and other.path.name == f"t.{os.getpid()}.000000.spool"
    other.close()
    spool.close()
