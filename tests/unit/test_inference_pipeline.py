"""The inference stage's pipelining: jobs run at Triton while the stage polls on, hand their
outputs back in submission order, are dropped when their partitions are revoked, and an
error in one is a retry (Transient) or, for a poison record, one dead letter."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from defectflow.v1 import deadletter_pb2

from services.common import topics
from services.common.errors import Transient
from services.common.stage import Handled, Output
from services.inference.config import InferenceSettings
from services.inference.main import InferenceHandler


def rec(partition: int, offset: int, value: bytes = b"chunk"):
    return SimpleNamespace(
        topic=topics.TILES, partition=partition, offset=offset, key=b"cam", value=value
    )


class Gates:
    """A stand-in for the Triton round trip: each record's job waits for its gate."""

    def __init__(self) -> None:
        self.gates: dict[tuple[int, int], threading.Event] = {}
        self.fail: dict[tuple[int, int], BaseException] = {}

    def gate(self, r) -> threading.Event:
        return self.gates.setdefault((r.partition, r.offset), threading.Event())

    def infer(self, records):
        for r in records:
            assert self.gate(r).wait(10), "test never opened the gate"
            if (r.partition, r.offset) in self.fail:
                raise self.fail[(r.partition, r.offset)]
        return [(r, Output(topics.PREDICTIONS, r.key, b"pred-%d" % r.offset)) for r in records]

    def open(self, *records) -> None:
        for r in records:
            self.gate(r).set()


@pytest.fixture()
def handler(tmp_path):
    h = InferenceHandler(InferenceSettings(recipes_dir=tmp_path, max_jobs=3), models=None)  # type: ignore[arg-type]
    gates = Gates()
    h.infer = gates.infer  # type: ignore[method-assign]
    yield h, gates
    for g in gates.gates.values():
        g.set()
    h.close()


def settle(h: InferenceHandler, until, timeout_s: float = 5.0) -> Handled:
    out = Handled()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        part = h.tick()
        out.outputs += part.outputs
        out.done += part.done
        if until(out):
            return out
        time.sleep(0.01)
    raise AssertionError(f"gave {out}")


def test_jobs_run_while_the_stage_polls_and_come_back_in_submission_order(handler):
    h, gates = handler
    a, b = rec(0, 10), rec(1, 20)
    assert h.handle([a]).done == [] and h.handle([b]).done == [], "handle does not wait"
    assert h.busy()
    gates.open(b)  # the second job finishes first ...
    time.sleep(0.1)
    assert h.tick().done == [], "... but waits for the first"
    gates.open(a)
    out = settle(h, lambda o: len(o.done) == 2)
    assert out.done == [a, b]
    assert [o.value for o in out.outputs] == [b"pred-10", b"pred-20"]
    assert not h.busy()


def test_a_revoked_partition_s_records_are_neither_done_nor_published(handler):
    from kafka import TopicPartition

    h, gates = handler
    a, b = rec(0, 1), rec(1, 2)
    h.handle([a, b])  # one job spanning two partitions
    h.revoke([TopicPartition(topics.TILES, 0)])
    gates.open(a, b)
    out = settle(h, lambda o: len(o.done) == 1)
    assert out.done == [b] and [o.value for o in out.outputs] == [b"pred-2"]


def test_a_transient_failure_drops_every_job_and_reaches_the_stage_loop(handler):
    h, gates = handler
    a, b = rec(0, 1), rec(0, 2)
    gates.fail[(0, 1)] = Transient("Triton unavailable")
    h.handle([a])
    h.handle([b])
    gates.open(a, b)
    with pytest.raises(Transient):
        settle(h, lambda o: False)
    assert not h.busy(), "the stage rewinds; the other jobs' work is redone from there"


def test_a_poison_record_is_dead_lettered_alone_and_its_batch_mates_go_on(handler):
    h, gates = handler
    good, bad = rec(0, 1), rec(0, 2, b"poison")
    gates.fail[(0, 2)] = ValueError("no check foresaw this")
    h.handle([good, bad])
    gates.open(good, bad)
    out = settle(h, lambda o: len(o.done) == 2)
    assert sorted(r.offset for r in out.done) == [1, 2]
    letters = [o for o in out.outputs if o.topic == topics.DEADLETTER]
    assert len(letters) == 1
    letter = deadletter_pb2.DeadLetter.FromString(letters[0].value)
    assert letter.reason == "processing_error" and letter.source_offset == 2
    assert "ValueError" in letter.detail
    assert [o.value for o in out.outputs if o.topic == topics.PREDICTIONS] == [b"pred-1"]


def test_handle_waits_for_the_oldest_job_when_max_jobs_are_out(handler):
    h, gates = handler
    records = [rec(0, i) for i in range(4)]
    for r in records[:3]:
        h.handle([r])
    returned = threading.Event()
    got: list[Handled] = []

    def fourth():
        got.append(h.handle([records[3]]))
        returned.set()

    t = threading.Thread(target=fourth)
    t.start()
    assert not returned.wait(0.3), "a fourth job must wait: max_jobs is 3"
    gates.open(records[0])
    assert returned.wait(5)
    t.join()
    assert got[0].done == [records[0]], "the finished job's work is handed back by handle"
    gates.open(*records[1:])
    assert settle(h, lambda o: len(o.done) == 3).done == records[1:]


def test_a_failed_job_leaves_the_records_of_revoked_partitions_to_their_next_owner(handler):
    from kafka import TopicPartition

    h, gates = handler
    mine, moved = rec(0, 1, b"poison"), rec(1, 5, b"poison")
    gates.fail[(0, 1)] = gates.fail[(1, 5)] = ValueError("no check foresaw this")
    h.handle([mine, moved])
    h.revoke([TopicPartition(topics.TILES, 1)])
    gates.open(mine, moved)
    out = settle(h, lambda o: len(o.done) == 1)
    time.sleep(0.2)
    out.done += h.tick().done
    assert out.done == [mine], "the moved partition's record is not ours to dead-letter"
    letters = [deadletter_pb2.DeadLetter.FromString(o.value) for o in out.outputs]
    assert [(x.source_partition, x.source_offset) for x in letters] == [(0, 1)]
