"""The stage loop's delivery rules against the real broker (and PostgreSQL for the store).

In-process StageRunners on private topics check rewind-after-Transient and poison
isolation; the store runs as a process against PostgreSQL that is killed and
restarted, and is stopped with SIGTERM while PostgreSQL is down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from defectflow.v1 import common_pb2, deadletter_pb2, inspections_pb2
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from typer.testing import CliRunner

from services.cli.dlq import app as dlq_app
from services.cli.dlq import read_letters
from services.common import topics
from services.common.config import StageSettings
from services.common.errors import Transient
from services.common.kafka_admin import ensure_topics
from services.common.stage import Handled, Output, StageRunner, StatelessHandler

pytestmark = pytest.mark.integration


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def private_topics(bootstrap: str, n: int = 2) -> list[str]:
    names = [f"test.{uuid.uuid4().hex[:10]}.v1" for _ in range(n)]
    ensure_topics(bootstrap, 2, tuple(names))
    return names


def produce(bootstrap: str, topic: str, items: Iterable[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for key, value in items:
        producer.send(topic, key=key, value=value)
    producer.flush(10)
    producer.close()


def consume_all(bootstrap: str, topic: str, idle_ms: int = 3000) -> list:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=idle_ms,
    )
    out = list(consumer)
    consumer.close()
    return out


def run_in_thread(runner: StageRunner) -> threading.Thread:
    t = threading.Thread(target=runner.run, daemon=True)
    t.start()
    return t


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    total = sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in (0, 1))
    consumer.close()
    return total


class HoldThenFailOnce:
    """Holds every record until all `n` arrived, then (like postprocess finishing frames)
    drops them from its state and returns the outputs; the first time, the publish is
    refused with Transient, so the records must be read again from the last safe point."""

    def __init__(self, n: int, out_topic: str) -> None:
        self.n, self.out_topic = n, out_topic
        self.held: dict[int, object] = {}
        self.failed = False
        self.revoked = 0

    def handle(self, records: Sequence) -> Handled:
        for r in records:
            self.held[r.value] = r
        return Handled()

    def tick(self) -> Handled:
        if len(self.held) < self.n:
            return Handled()
        records = list(self.held.values())
        self.held.clear()  # state gone, as postprocess pops a finished frame
        if not self.failed:
            self.failed = True
            raise Transient("broker did not acknowledge (simulated)")
        return Handled(
            outputs=[Output(self.out_topic, r.key, r.value) for r in records], done=records
        )

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        self.revoked += 1
        self.held.clear()


def test_transient_rewinds_to_the_oldest_pending_record_across_batches(broker):
    src, dst = private_topics(broker.bootstrap)
    n = 12
    handler = HoldThenFailOnce(n, dst)
    settings = StageSettings(kafka_bootstrap=broker.bootstrap, poll_timeout_ms=100)
    runner = StageRunner("test", src, handler, settings, group_id=f"g-{src}")
    thread = run_in_thread(runner)
    # in several sends, so the held records span several poll batches
    for i in range(0, n, 3):
        produce(broker.bootstrap, src, [(b"k%d" % (j % 2), b"%d" % j) for j in range(i, i + 3)])
        time.sleep(0.3)
    wait_for(lambda: committed(broker.bootstrap, f"g-{src}", src) >= n, 60, "all offsets committed")
    runner.stop()
    thread.join(30)
    values = sorted(int(r.value) for r in consume_all(broker.bootstrap, dst))
    assert handler.failed and handler.revoked >= 1
    assert values == list(range(n)), "every held record was redone after the Transient failure"


class PoisonOnBoom(StatelessHandler):
    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic

    def handle(self, records: Sequence) -> Handled:
        outs = []
        for r in records:
            if r.value == b"boom":
                raise ValueError("no check foresaw this input")
            outs.append(Output(self.out_topic, r.key, r.value.upper()))
        return Handled(outputs=outs, done=list(records))


def test_poison_record_is_dead_lettered_and_the_rest_flows(broker):
    src, dst = private_topics(broker.bootstrap)
    runner = StageRunner(
        "test",
        src,
        PoisonOnBoom(dst),
        StageSettings(kafka_bootstrap=broker.bootstrap, poll_timeout_ms=100),
        group_id=f"g-{src}",
    )
    thread = run_in_thread(runner)
    values = [b"a", b"b", b"boom", b"c", b"d"]
    produce(broker.bootstrap, src, [(b"same-key", v) for v in values])
    wait_for(lambda: committed(broker.bootstrap, f"g-{src}", src) >= 5, 60, "5 offsets committed")
    runner.stop()
    thread.join(30)
    assert sorted(r.value for r in consume_all(broker.bootstrap, dst)) == [b"A", b"B", b"C", b"D"]
    mine = [lt.msg for lt in read_letters(broker.bootstrap) if lt.msg.source_topic == src]
    assert len(mine) == 1 and mine[0].reason == "processing_error"
    assert mine[0].value == b"boom" and "ValueError" in mine[0].detail


class Consume(StatelessHandler):
    def handle(self, records: Sequence) -> Handled:
        return Handled(done=list(records))


def test_a_replica_stopped_while_joining_does_not_stall_its_group(broker):
    """Scale up then straight down (or a test that fails 2 s after starting its services):
    the next replica of the group must still get the partitions."""
    (src,) = private_topics(broker.bootstrap, 1)
    settings = StageSettings(kafka_bootstrap=broker.bootstrap, poll_timeout_ms=100)

    def replica() -> tuple[StageRunner, threading.Thread]:
        runner = StageRunner("test", src, Consume(), settings, group_id=f"g-{src}")
        return runner, run_in_thread(runner)

    first, thread = replica()  # the group exists and is stable
    wait_for(lambda: first.in_group, 30, "the first replica's assignment")
    first.stop()
    thread.join(30)
    joining, thread = replica()
    time.sleep(1.0)  # inside the join: Tansu holds a JoinGroup for ~half the session timeout
    assert not joining.in_group, "stopped too late to test a stop in the middle of a join"
    joining.stop()
    thread.join(30)
    assert not thread.is_alive()
    last, thread = replica()
    try:
        wait_for(lambda: last.in_group, 45, "the next replica's assignment")
        assert last.consumer.assignment() == {TopicPartition(src, 0), TopicPartition(src, 1)}
    finally:
        last.stop()
        thread.join(30)


class HoldUntilReleased:
    """Keeps every record in hand (like postprocess waiting for a frame's last chunk) until
    `release` is set; a revoke drops what it holds for those partitions."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic
        self.held: list = []
        self.release = threading.Event()

    def handle(self, records: Sequence) -> Handled:
        self.held += records
        return Handled()

    def tick(self) -> Handled:
        if not self.release.is_set():
            return Handled()
        done, self.held = self.held, []
        return Handled(outputs=[Output(self.out_topic, r.key, r.value) for r in done], done=done)

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        gone = set(partitions)
        self.held = [r for r in self.held if TopicPartition(r.topic, r.partition) not in gone]


def test_work_in_hand_at_a_rebalance_is_redone_on_the_partition_we_keep(broker):
    """A replica joins while the first holds unfinished records on both partitions: the
    partition that moves is redone by the newcomer, the one that stays must be read again
    by the first (its fetch position survived the rebalance, its work did not)."""
    src, dst = private_topics(broker.bootstrap)
    settings = StageSettings(kafka_bootstrap=broker.bootstrap, poll_timeout_ms=100)
    holder = HoldUntilReleased(dst)
    first = StageRunner("test", src, holder, settings, group_id=f"g-{src}")
    threads = [run_in_thread(first)]
    wait_for(lambda: first.in_group, 30, "the first replica's assignment")
    values = [b"%d" % i for i in range(8)]
    produce(broker.bootstrap, src, [(b"key-%d" % i, v) for i, v in enumerate(values)])
    wait_for(lambda: len(holder.held) == 8, 30, "8 records in hand")
    assert {r.partition for r in holder.held} == {0, 1}
    second = StageRunner("test", src, HoldUntilReleased(dst), settings, group_id=f"g-{src}")
    second.handler.release.set()
    threads.append(run_in_thread(second))
    try:
        wait_for(lambda: first.in_group and second.in_group, 45, "the rebalance")
        assert len(first.consumer.assignment()) == 1 == len(second.consumer.assignment())
        holder.release.set()
        wait_for(lambda: committed(broker.bootstrap, f"g-{src}", src) >= 8, 45, "8 committed")
    finally:
        for runner in (first, second):
            runner.stop()
        for t in threads:
            t.join(30)
    out = sorted(r.value for r in consume_all(broker.bootstrap, dst))
    assert sorted(set(out)) == sorted(values), "every record's output, none lost"


def test_dlq_list_filters_and_replay_sends_each_source_message_once(broker):
    (src,) = private_topics(broker.bootstrap, 1)
    now = time.time_ns()

    def letter(reason: str, offset: int, value: bytes) -> bytes:
        return deadletter_pb2.DeadLetter(
            service="tiling",
            reason=reason,
            detail="test",
            source_topic=src,
            source_partition=0,
            source_offset=offset,
            key=b"k",
            value=value,
            failed_unix_ns=now,
            frame_id=f"f{offset}",
        ).SerializeToString()

    # offset 7 was dead-lettered twice (redone after a crash): one replay only
    produce(
        broker.bootstrap,
        topics.DEADLETTER,
        [
            (b"k", letter("unknown_recipe", 7, b"seven")),
            (b"k", letter("unknown_recipe", 7, b"seven")),
            (b"k", letter("corrupt_image", 8, b"eight")),
        ],
    )
    cli = CliRunner()
    boot = ["--bootstrap", broker.bootstrap, "--idle-ms", "1500", "--since-s", "600"]
    res = cli.invoke(dlq_app, ["list", "--json", "--reason", "unknown_recipe", *boot])
    assert res.exit_code == 0, res.output
    mine = [line for line in res.output.splitlines() if src in line]
    assert len(mine) == 1 and '"frame_id": "f7"' in mine[0] and '"source_offset": 7' in mine[0]

    res = cli.invoke(dlq_app, ["replay", "--dry-run", "--reason", "unknown_recipe", *boot])
    assert res.exit_code == 0 and f"would replay {src}[0]@7" in res.output
    assert consume_all(broker.bootstrap, src, 1500) == []

    res = cli.invoke(dlq_app, ["replay", "--frame-id", "f7", "--frame-id", "f8", *boot])
    assert res.exit_code == 0, res.output
    assert sorted(r.value for r in consume_all(broker.bootstrap, src)) == [b"eight", b"seven"]


def inspection(frame_id: str) -> bytes:
    return inspections_pb2.Inspection(
        schema_version=1,
        context=common_pb2.FrameContext(
            frame_id=frame_id,
            source=common_pb2.FrameSource(line="line-r", station="st-r", camera="cam-r"),
            recipe_id="brushed-metal",
            captured_unix_ns=time.time_ns(),
        ),
        verdict=1,
        complete=True,
    ).SerializeToString()


def send_inspections(bootstrap: str, n: int) -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(n)]
    produce(bootstrap, topics.INSPECTIONS, [(b"line-r/st-r/cam-r", inspection(f)) for f in ids])
    return ids


def test_store_keeps_its_batch_while_postgres_is_down_and_stops_cleanly(local, broker, postgres):
    engine = sa.create_engine(postgres.url, pool_pre_ping=True)

    def count(ids: list[str]) -> int:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("select count(*) from inspections where frame_id = any(:ids)"),
                {"ids": ids},
            ).scalar_one()

    # this test's store must be the only member of the store's consumer group: services
    # an earlier test left running (the e2e pipeline) are stopped; later tests restart them
    local.stop_services()
    store = local.start_service("store")
    try:
        a = send_inspections(broker.bootstrap, 20)
        wait_for(lambda: count(a) == 20, 60, "batch A stored")

        # PostgreSQL dies: the store retries the same batch until it is back
        local.postgres.process.kill()
        b = send_inspections(broker.bootstrap, 10)
        time.sleep(4)
        assert store.alive(), "the store must wait for PostgreSQL, not crash"
        local.restart_postgres()
        engine.dispose()
        wait_for(lambda: count(b) == 10, 60, "batch B stored after PostgreSQL came back")

        # down again, and Kubernetes stops the store meanwhile: it must exit in time,
        # without committing batch C, which the next store writes
        local.postgres.process.kill()
        c = send_inspections(broker.bootstrap, 10)
        time.sleep(3)
        t0 = time.monotonic()
        store.proc.send_signal(signal.SIGTERM)
        rc = store.proc.wait(30)
        stop_s = time.monotonic() - t0
        assert rc == 0 and stop_s < 20, f"store exited rc={rc} after {stop_s:.1f} s"
        local.restart_postgres()
        engine.dispose()
        store = local.restart_service("store")
        wait_for(lambda: count(c) == 10, 60, "batch C stored by the restarted store")
        time.sleep(1)
        assert (count(a), count(b), count(c)) == (20, 10, 10)
        log = store.log_path.read_text()
        assert "transient failure" in log
    finally:
        local.services.pop("store").stop()
        with engine.begin() as conn:  # leave the shared database as found
            conn.execute(
                sa.text("delete from inspections where line = 'line-r' and camera = 'cam-r'")
            )
        engine.dispose()


class Gate(StatelessHandler):
    """Passes records through once `release` is set, so a test can pause the broker while
    the outputs of a batch are still to be published."""

    def __init__(self, out_topic: str) -> None:
        self.out_topic = out_topic
        self.got = threading.Event()
        self.release = threading.Event()

    def handle(self, records: Sequence) -> Handled:
        self.got.set()
        self.release.wait(60)
        return Handled(
            outputs=[Output(self.out_topic, r.key, r.value) for r in records], done=list(records)
        )


def test_stage_rides_out_a_broker_that_stops_answering(broker):
    """SIGSTOP the broker between handling and publishing (Tansu keeps data only in memory,
    so it is paused, not killed): the stage must publish or redo, and lose nothing."""
    src, dst = private_topics(broker.bootstrap)
    gate = Gate(dst)
    runner = StageRunner(
        "test",
        src,
        gate,
        StageSettings(kafka_bootstrap=broker.bootstrap, poll_timeout_ms=100),
        group_id=f"g-{src}",
    )
    thread = run_in_thread(runner)
    produce(broker.bootstrap, src, [(b"k%d" % (i % 3), b"%d" % i) for i in range(10)])
    assert gate.got.wait(60)
    pgid = broker.process.pid
    os.killpg(pgid, signal.SIGSTOP)
    try:
        gate.release.set()
        time.sleep(12)  # publish and heartbeats time out meanwhile
    finally:
        os.killpg(pgid, signal.SIGCONT)
    wait_for(lambda: committed(broker.bootstrap, f"g-{src}", src) >= 10, 90, "10 offsets committed")
    runner.stop()
    thread.join(30)
    assert thread.is_alive() is False
    values = {int(r.value) for r in consume_all(broker.bootstrap, dst)}
    assert values == set(range(10)), "every record published after the broker came back"


STUCK_STAGE = """
import sys, threading
from services.common.config import StageSettings
from services.common.stage import Handled, StageRunner, StatelessHandler

class Settings(StageSettings):
    shutdown_timeout_s: float = 2.0

class Stuck(StatelessHandler):
    def handle(self, records):
        print("handling", flush=True)
        threading.Event().wait()  # a dependency that never answers
        return Handled(done=list(records))

topic = sys.argv[2]
runner = StageRunner("test", topic, Stuck(), Settings(kafka_bootstrap=sys.argv[1]),
                     group_id="g-" + topic)
runner.install_signal_handlers()  # as run_stage() does
runner.run()
"""


def test_sigterm_with_a_stuck_batch_exits_in_time_without_committing_it(broker, tmp_path):
    (src,) = private_topics(broker.bootstrap, 1)
    script = tmp_path / "stuck.py"
    script.write_text(STUCK_STAGE)
    proc = subprocess.Popen(
        [sys.executable, str(script), broker.bootstrap, src],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        produce(broker.bootstrap, src, [(b"k", b"x")])
        assert proc.stdout is not None
        wait_for(lambda: b"handling" in proc.stdout.readline(), 60, "the batch in hand")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 75 and took < 5, f"exit {rc} after {took:.1f} s"
    assert committed(broker.bootstrap, f"g-{src}", src) == 0
