"""The consume -> process -> produce -> commit loop every Kafka stage runs.

Delivery: at least once. A record's offset is committed only after every
output it caused was acknowledged by the broker (acks=all) and the handler
declared it done; a stateful handler (postprocess waiting for a frame's tiles)
keeps records pending, and the committed offset never passes the oldest
pending one. Bad input goes to the dead-letter topic; a Transient error (a
dependency down, the broker not acknowledging) rewinds every partition to its
last safe point, drops the handler's state for them and retries after a
backoff, so nothing is lost. A record whose handling raises anything else is
isolated and dead-lettered as "processing_error", so one poison message cannot
crash-loop a service.

Shutdown (SIGTERM from Kubernetes): stop polling, let the batch in hand finish,
commit what is done, leave the group; work not done is not committed and is
redone by the next owner. A replica stopped while its group is still joining
does not send LeaveGroup (see `StageRunner.close`). If the batch in hand does not finish within
`shutdown_timeout_s` (a stalled dependency), the process exits without
committing it. A second signal exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from defectflow.v1 import deadletter_pb2
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError

from services.common import metrics, topics
from services.common.config import StageSettings
from services.common.errors import BadInput, Transient

log = logging.getLogger("defectflow.stage")

EXIT_SHUTDOWN_TIMEOUT = 75  # exit code when the in-hand batch was abandoned at shutdown


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes


@dataclass
class Handled:
    """What a handler made of a batch: outputs, dead letters, and which records are done."""

    outputs: list[Output] = field(default_factory=list)
    done: list[ConsumerRecord] = field(default_factory=list)


class Handler(Protocol):
    def handle(self, records: Sequence[ConsumerRecord]) -> Handled: ...

    def tick(self) -> Handled:
        """Called every loop: time-based work (timeouts), work finished in the background;
        default nothing."""
        ...

    def revoke(self, partitions: Iterable[TopicPartition]) -> None: ...


def dead_letter(service: str, record: ConsumerRecord, err: BadInput) -> Output:
    msg = deadletter_pb2.DeadLetter(
        service=service,
        reason=err.reason,
        detail=err.detail,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key=record.key or b"",
        value=record.value or b"",
        failed_unix_ns=time.time_ns(),
        frame_id=err.frame_id,
    )
    log.warning(
        "dead letter: %s",
        err.detail,
        extra={
            "reason": err.reason,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "frame_id": err.frame_id,
        },
    )
    metrics.DEAD_LETTERS.labels(service, err.reason).inc()
    metrics.MESSAGES_FAILED.labels(service, "dead_letter").inc()
    return Output(topics.DEADLETTER, record.key, msg.SerializeToString())


class OffsetTracker:
    """Per partition: offsets seen but not yet done; the commit point never passes them."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, set[int]] = {}
        self.next_offset: dict[TopicPartition, int] = {}

    def seen(self, records: Iterable[ConsumerRecord]) -> None:
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            self.pending.setdefault(tp, set()).add(r.offset)
            self.next_offset[tp] = max(self.next_offset.get(tp, 0), r.offset + 1)

    def done(self, records: Iterable[ConsumerRecord]) -> None:
        for r in records:
            self.pending.get(TopicPartition(r.topic, r.partition), set()).discard(r.offset)

    def commit_points(self) -> dict[TopicPartition, int]:
        points = {}
        for tp, nxt in self.next_offset.items():
            pend = self.pending.get(tp)
            points[tp] = min(pend) if pend else nxt
        return points

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in list(partitions):
            self.pending.pop(tp, None)
            self.next_offset.pop(tp, None)


def make_producer(bootstrap: str) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        retries=10,
        linger_ms=2,
        max_request_size=4 * 1024 * 1024,
        max_in_flight_requests_per_connection=1,  # retries must not reorder one camera's frames
        request_timeout_ms=15000,
    )


class StageRunner:
    """Runs one handler over one input topic until SIGTERM/SIGINT or `stop()`."""

    def __init__(
        self,
        service: str,
        input_topic: str,
        handler: Handler,
        settings: StageSettings,
        group_id: str | None = None,
    ) -> None:
        self.service = service
        self.input_topic = input_topic
        self.handler = handler
        self.settings = settings
        self.group_id = group_id or topics.GROUPS[input_topic]
        self.stopping = threading.Event()
        self._watchdog: threading.Timer | None = None
        self.tracker = OffsetTracker()
        self.committed: dict[TopicPartition, int] = {}
        self.in_group = False  # from an assignment until the next rebalance starts
        # where each partition's unfinished work began when a rebalance took it from us
        self._resume: dict[TopicPartition, int] = {}
        self._lag_exported = 0.0
        for kind in ("dead_letter", "transient"):  # series at 0 from the start, not on the
            metrics.MESSAGES_FAILED.labels(service, kind)  # first failure (rates need both)
        metrics.MESSAGES_IN.labels(service)
        self.producer = make_producer(settings.kafka_bootstrap)
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.max_poll_records,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=max(500, settings.session_timeout_ms // 6),
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )
        self.consumer.subscribe([input_topic], listener=_Rebalance(self))

    def stop(self, *_: object) -> None:
        if self.stopping.is_set():
            log.warning("second stop signal: exiting now, unfinished input is not committed")
            os._exit(EXIT_SHUTDOWN_TIMEOUT)
        self.stopping.set()
        timeout = float(self.settings.shutdown_timeout_s)
        self._watchdog = threading.Timer(timeout, self._abandon, args=(timeout,))
        self._watchdog.daemon = True
        self._watchdog.start()

    def _abandon(self, timeout: float) -> None:
        # the batch in hand is stuck (e.g. Triton stalled): its input was never committed,
        # so exiting here loses nothing; the next owner of the partitions redoes it
        log.warning(
            "shutdown took over %.0f s: exiting without committing the batch in hand", timeout
        )
        os._exit(EXIT_SHUTDOWN_TIMEOUT)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        backoff = 0.5
        try:
            while not self.stopping.is_set():
                try:
                    batch = self.consumer.poll(timeout_ms=self._poll_timeout_ms())
                except KafkaError as exc:  # broker gone: kafka-python reconnects on next poll
                    log.warning("poll failed, retrying: %s", exc)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                records = [r for tp in sorted(batch, key=lambda t: t.partition) for r in batch[tp]]
                try:
                    self._process(records)
                    self._export_gauges()
                    backoff = 0.5
                except Transient as exc:
                    log.warning("transient failure, will redo %d records: %s", len(records), exc)
                    metrics.TRANSIENT_FAILURES.labels(self.service).inc()
                    metrics.MESSAGES_FAILED.labels(self.service, "transient").inc(len(records))
                    self._rewind(records)
                    self.stopping.wait(backoff)
                    backoff = min(backoff * 2, 10.0)
        finally:
            self.close()

    def _poll_timeout_ms(self) -> int:
        """Short while the handler has work out in the background (its `busy()`), so its
        `tick` hands that work on as soon as it is finished; else the usual wait."""
        busy = getattr(self.handler, "busy", None)
        if busy is not None and busy():
            return self.settings.busy_poll_ms
        return self.settings.poll_timeout_ms

    def _process(self, records: list[ConsumerRecord]) -> None:
        start = time.perf_counter()
        handled = Handled()
        if records:
            metrics.MESSAGES_IN.labels(self.service).inc(len(records))
            self.tracker.seen(records)
            part = self._handle(records)
            handled.outputs += part.outputs
            handled.done += part.done
        part = self.handler.tick()
        handled.outputs += part.outputs
        handled.done += part.done
        if not handled.outputs and not handled.done:
            return
        self._publish(handled.outputs)
        self.tracker.done(handled.done)
        self._commit()
        if records:
            metrics.STAGE_SECONDS.labels(self.service).observe(time.perf_counter() - start)

    def _export_gauges(self) -> None:
        """In-flight records and, at most once a second, consumer lag per partition: the
        highwater offset from the last fetch (no broker round trip) minus our committed
        offset. Against Tansu the highwater is short by up to a batch (DESIGN.md)."""
        metrics.IN_FLIGHT.labels(self.service).set(
            sum(len(p) for p in self.tracker.pending.values())
        )
        now = time.monotonic()
        if now - self._lag_exported < 1.0:
            return
        self._lag_exported = now
        lag = []
        for tp in self.consumer.assignment():
            end, done = self.consumer.highwater(tp), self.committed.get(tp)
            if end is not None and done is not None:
                lag.append((tp.topic, tp.partition, end - done))
        metrics.set_lag(self.service, lag, [])

    def _handle(self, records: Sequence[ConsumerRecord]) -> Handled:
        """handler.handle, with a record that raises an unexpected error isolated and
        dead-lettered instead of crash-looping the service."""
        try:
            return self.handler.handle(records)
        except (Transient, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - a bug or an input no check foresaw
            if len(records) > 1:
                log.warning("batch of %d failed (%r): handling one by one", len(records), exc)
                out = Handled()
                for r in records:
                    part = self._handle([r])
                    out.outputs += part.outputs
                    out.done += part.done
                return out
            log.exception("record failed with an unexpected error: dead letter")
            err = BadInput("processing_error", f"{type(exc).__name__}: {exc}")
            return Handled(outputs=[dead_letter(self.service, records[0], err)], done=list(records))

    def _publish(self, outputs: list[Output]) -> None:
        try:
            futures = [self.producer.send(o.topic, key=o.key, value=o.value) for o in outputs]
            self.producer.flush(timeout=30)
            for fut in futures:
                fut.get(timeout=30)
        except Exception as exc:  # noqa: BLE001 - any send failure means "not acknowledged"
            raise Transient(f"broker did not acknowledge an output: {exc!r}") from exc
        for o in outputs:
            if o.topic != topics.DEADLETTER:
                metrics.MESSAGES_OUT.labels(self.service, o.topic).inc()

    def _commit(self) -> None:
        points = {
            tp: off
            for tp, off in self.tracker.commit_points().items()
            if self.committed.get(tp) != off and tp in self.consumer.assignment()
        }
        if not points:
            return
        try:
            self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in points.items()})
        except KafkaError as exc:  # the outputs are out; a later commit covers these points
            log.warning("offset commit failed, will retry with the next commit: %s", exc)
            return
        self.committed.update(points)

    def _rewind(self, records: list[ConsumerRecord]) -> None:
        """Back to the last safe point of every partition we hold work for.

        Not just this batch: a stateful handler may have finished (and lost the outputs
        of) records from earlier batches, so its state for those partitions is dropped
        and every record from the oldest pending one on is read again.
        """
        self.tracker.seen(records)
        points = self.tracker.commit_points()
        assigned = self.consumer.assignment()
        self.handler.revoke(list(points))
        self.tracker.forget(list(points))
        for tp, off in points.items():
            if tp in assigned:
                self.consumer.seek(tp, off)

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        self.in_group = False  # a rebalance begins: called before every (re)join
        try:
            self._commit()
        except Exception as exc:  # noqa: BLE001 - the new owner redoes uncommitted work
            log.warning("commit on revoke failed: %s", exc)
        points = self.tracker.commit_points()
        self._resume = {tp: points[tp] for tp in partitions if tp in points}
        self.handler.revoke(partitions)
        self.tracker.forget(partitions)
        for tp in partitions:
            self.committed.pop(tp, None)
        metrics.set_lag(self.service, [], [(tp.topic, tp.partition) for tp in partitions])

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        """A partition we get back keeps its fetch position (kafka-python keeps the state
        of partitions in both the old and the new assignment), but the work we had in hand
        for it was dropped at the revoke: read again from where that work began, or it is
        committed past and lost."""
        self.in_group = True
        for tp in partitions:
            if tp in self._resume:
                self.consumer.seek(tp, self._resume[tp])
        self._resume = {}

    def close(self) -> None:
        """Commit what is done (never what is pending), leave the group, close."""
        try:
            self.producer.flush(timeout=10)
            self._commit()
        except Exception as exc:  # noqa: BLE001 - uncommitted input is redone by the next owner
            log.warning("final commit failed, input will be redone: %s", exc)
        pending = sum(len(p) for p in self.tracker.pending.values())
        log.info("stopped; %d records not done, left uncommitted for the next owner", pending)
        try:
            if self.in_group:
                self.consumer.close(autocommit=False)
            else:
                self._drop_out_of_join()
        finally:
            self.producer.close(timeout=5)
            if self._watchdog is not None:
                self._watchdog.cancel()

    def _drop_out_of_join(self) -> None:
        # Stopped while the group is (re)joining. A LeaveGroup at this point leaves Tansu
        # 0.6's group waiting for the member that left: no later member is ever assigned
        # (reproduced in tests/integration/test_reliability.py; in CI it stalled every store
        # started after a test stopped one 2 s after its start). Closing the connections
        # without leaving is what a crash does, which every broker handles: the member is
        # expired after session_timeout_ms and the group rebalances without it.
        log.info(
            "stopped while joining group %s: not leaving it, the broker expires us in %d ms",
            self.group_id,
            self.settings.session_timeout_ms,
        )
        self.consumer._client.close()  # noqa: SLF001 - kafka-python has no close-without-leave


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: StageRunner) -> None:
        self.runner = runner

    def on_partitions_revoked(self, revoked):  # type: ignore[no-untyped-def]
        self.runner.on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        self.runner.on_assigned(list(assigned))
        log.info("assigned %s", sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))


class StatelessHandler:
    """Base for stages that finish every record within the batch it arrived in."""

    def tick(self) -> Handled:
        return Handled()

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        return None


def run_stage(service: str, input_topic: str, handler: Handler, settings: StageSettings) -> None:
    """What every Kafka stage's main() does: metrics endpoint, signal handlers, the loop."""
    metrics.serve(settings.metrics_port, settings.metrics_addr)
    runner = StageRunner(service, input_topic, handler, settings)
    runner.install_signal_handlers()
    runner.run()
