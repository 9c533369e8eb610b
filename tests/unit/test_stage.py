"""Pure parts of the delivery guarantee: commit points, ingest's spool and accepted log,
the DLQ selection used by `defectflow dlq replay`."""

from __future__ import annotations

import json

import numpy as np
from defectflow.v1 import deadletter_pb2
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from services.cli.dlq import Letter, replayable, select
from services.common import topics
from services.common.stage import OffsetTracker
from services.ingest.adapters.cameras import GroundTruthLog, SyntheticCamera
from services.ingest.adapters.publish import recover
from services.ingest.adapters.spool import Spool, Spooled


def rec(offset: int, partition: int = 0) -> ConsumerRecord:
    return ConsumerRecord("t", partition, -1, offset, 0, 0, b"k", b"v", [], None, 1, 1, -1)


def test_commit_point_never_passes_the_oldest_pending_record():
    t = OffsetTracker()
    t.seen([rec(0), rec(1), rec(2), rec(5, partition=1)])
    t.done([rec(1), rec(2)])
    assert t.commit_points() == {TopicPartition("t", 0): 0, TopicPartition("t", 1): 5}
    t.done([rec(0), rec(5, partition=1)])
    assert t.commit_points() == {TopicPartition("t", 0): 3, TopicPartition("t", 1): 6}
    t.forget([TopicPartition("t", 0)])
    assert t.commit_points() == {TopicPartition("t", 1): 6}


def letter(reason: str, offset: int, service="tiling", frame_id="f", t_ns=10**18) -> Letter:
    return Letter(
        0,
        offset,
        deadletter_pb2.DeadLetter(
            reason=reason,
            service=service,
            source_topic=topics.FRAMES,
            source_partition=0,
            source_offset=offset,
            frame_id=frame_id,
            failed_unix_ns=t_ns,
        ),
    )


def test_dlq_selection_filters_and_keeps_one_letter_per_source_message():
    letters = [
        letter("unknown_recipe", 1, frame_id="a"),
        letter("unknown_recipe", 1, frame_id="a"),  # the same message, dead-lettered twice
        letter("corrupt_image", 2, frame_id="b"),
        letter("bad_model_output", 3, service="inference", frame_id="c", t_ns=1),
    ]
    assert [lt.offset for lt in select(letters)] == [1, 2, 3]
    assert [lt.offset for lt in select(letters, reasons=["unknown_recipe"])] == [1]
    assert [lt.offset for lt in select(letters, services=["inference"])] == [3]
    assert [lt.offset for lt in select(letters, frame_ids=["b", "c"])] == [2, 3]
    assert [lt.offset for lt in select(letters, since_s=60, now_ns=10**18)] == [1, 2]
    selfref = letter("x", 9)
    selfref.msg.source_topic = topics.DEADLETTER
    assert replayable(letters[0]) and not replayable(selfref)


def item(fid: str, cam="cam-1-1") -> Spooled:
    return Spooled(fid, "line-1", cam, b"key", b"value-" + fid.encode(), {"seed": 1})


def test_spool_keeps_unacknowledged_frames_in_capture_order(tmp_path):
    spool = Spool(tmp_path / "spool")
    for fid in ("a", "b", "c"):
        spool.put(item(fid))
    spool.remove("b")
    (tmp_path / "spool" / ".half-written.json.tmp").write_text("{")
    assert [i.frame_id for i in spool.pending()] == ["a", "c"]
    assert spool.pending()[1].value == b"value-c"
    assert not list((tmp_path / "spool").glob(".*.tmp"))


def test_restart_resends_only_frames_not_yet_accepted_and_resumes_each_camera(tmp_path):
    truth_path = tmp_path / "accepted.jsonl"
    spool = Spool(tmp_path / "spool")
    truth = GroundTruthLog(truth_path)

    for fid in ("a", "b", "c", "d"):
        spool.put(item(fid))
    truth.write("a", "line-1", "cam-1-1", None)  # acknowledged and logged, spool entry removed
    spool.remove("a")
    truth.write(
        "b", "line-1", "cam-1-1", None
    )  # acknowledged and logged, killed before the spool removal
    truth.flush()
    truth.file.close()
    with open(truth_path, "a") as f:  # and a line torn by kill -9
        f.write('{"frame_id": "zz", "li')
    truth = GroundTruthLog(truth_path)  # reopening cuts the torn line off
    assert [e["frame_id"] for e in truth.entries()] == ["a", "b"]
    resend, progress = recover(spool, truth)
    assert [i.frame_id for i in resend] == ["c", "d"], "accepted frames are never re-emitted"
    assert progress[("line-1", "cam-1-1")] == 4
    assert [i.frame_id for i in Spool(tmp_path / "spool").pending()] == ["c", "d"]
    truth.write("c", "line-1", "cam-1-1", None)
    truth.flush()
    lines = truth_path.read_text().splitlines()
    assert [json.loads(x)["frame_id"] for x in lines] == ["a", "b", "c"]


def test_synthetic_camera_resumes_where_it_stopped():
    a = SyntheticCamera("l", "s", "c", "brushed_metal", 5, 0.5, ["scratch"], (128, 128))
    b = SyntheticCamera("l", "s", "c", "brushed_metal", 5, 0.5, ["scratch"], (128, 128))
    for _ in range(3):
        a.read()
    b.skip(3)
    ca, cb = a.read(), b.read()
    assert ca.truth == cb.truth and np.array_equal(ca.image, cb.image)
