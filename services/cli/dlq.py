"""`defectflow dlq`: read the dead-letter topic and replay letters into their source topic.

A dead letter keeps the original key and bytes, the reason, the service and the
source topic/partition/offset. After a fix (a recipe added, a bug fixed) `replay`
sends the selected letters' original bytes back to their source topic, where the
stage that refused them reads them again. The dead-letter topic is read until it
is idle (Tansu's end offsets are not exact, so they are not used to find the end).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import typer
from defectflow.v1 import deadletter_pb2
from kafka import KafkaConsumer, TopicPartition

from services.common import topics
from services.common.stage import make_producer

app = typer.Typer(help="Dead letters: list them, replay them into their source topic after a fix.")

BOOTSTRAP = typer.Option(
    "127.0.0.1:9092", envvar="DEFECTFLOW_KAFKA_BOOTSTRAP", help="Kafka bootstrap host:port"
)
REASON = typer.Option([], "--reason", help="only this reason (repeatable)")
SERVICE = typer.Option([], "--service", help="only letters from this service (repeatable)")
FRAME_ID = typer.Option([], "--frame-id", help="only this frame id (repeatable)")
SINCE = typer.Option(0.0, "--since-s", help="only letters that failed in the last N seconds")
IDLE = typer.Option(3000, "--idle-ms", help="stop reading after the topic is idle this long")


@dataclass(frozen=True)
class Letter:
    """One dead letter and where it sits in the dead-letter topic."""

    partition: int
    offset: int
    msg: deadletter_pb2.DeadLetter

    @property
    def source(self) -> tuple[str, int, int]:
        m = self.msg
        return (m.source_topic, m.source_partition, m.source_offset)

    def as_dict(self) -> dict:
        m = self.msg
        return {
            "reason": m.reason,
            "service": m.service,
            "detail": m.detail,
            "source_topic": m.source_topic,
            "source_partition": m.source_partition,
            "source_offset": m.source_offset,
            "frame_id": m.frame_id,
            "failed_at": datetime.fromtimestamp(m.failed_unix_ns / 1e9, UTC).isoformat(),
            "dlq_partition": self.partition,
            "dlq_offset": self.offset,
            "size_bytes": len(m.value),
        }


def read_letters(bootstrap: str, idle_ms: int = 3000) -> list[Letter]:
    """Every letter in the dead-letter topic, read from the start until idle (no group)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    try:
        parts = consumer.partitions_for_topic(topics.DEADLETTER) or set()
        tps = [TopicPartition(topics.DEADLETTER, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        letters = []
        for rec in consumer:
            try:
                msg = deadletter_pb2.DeadLetter.FromString(rec.value)
            except Exception:  # noqa: BLE001 - a foreign message in the DLQ is shown, not fatal
                msg = deadletter_pb2.DeadLetter(reason="unreadable_dead_letter", value=rec.value)
            letters.append(Letter(rec.partition, rec.offset, msg))
        return letters
    finally:
        consumer.close()


def select(
    letters: Iterable[Letter],
    reasons: Iterable[str] = (),
    services: Iterable[str] = (),
    frame_ids: Iterable[str] = (),
    since_s: float = 0.0,
    now_ns: int | None = None,
) -> list[Letter]:
    """Letters matching every given filter, one per source message.

    A message redone after a crash can be dead-lettered twice (at-least-once); both
    letters name the same source topic/partition/offset, and only the first is kept,
    so a replay never sends the same source message twice.
    """
    reasons, services, frame_ids = set(reasons), set(services), set(frame_ids)
    cutoff = (now_ns or time.time_ns()) - int(since_s * 1e9) if since_s > 0 else 0
    out, seen = [], set()
    for lt in letters:
        m = lt.msg
        if reasons and m.reason not in reasons:
            continue
        if services and m.service not in services:
            continue
        if frame_ids and m.frame_id not in frame_ids:
            continue
        if m.failed_unix_ns < cutoff:
            continue
        if lt.source in seen:
            continue
        seen.add(lt.source)
        out.append(lt)
    return out


def replayable(lt: Letter) -> bool:
    """A letter goes back to where it came from: never into the dead-letter topic itself."""
    return bool(lt.msg.source_topic) and lt.msg.source_topic != topics.DEADLETTER


def replay(bootstrap: str, letters: list[Letter]) -> int:
    """Send each letter's original key and bytes to its source topic; returns how many."""
    sendable = [lt for lt in letters if replayable(lt)]
    producer = make_producer(bootstrap)
    try:
        futures = [
            producer.send(lt.msg.source_topic, key=lt.msg.key or None, value=lt.msg.value)
            for lt in sendable
        ]
        producer.flush(timeout=30)
        for fut in futures:
            fut.get(timeout=30)
    finally:
        producer.close(timeout=10)
    return len(sendable)


@app.command("list")
def list_cmd(
    bootstrap: str = BOOTSTRAP,
    reason: list[str] = REASON,
    service: list[str] = SERVICE,
    frame_id: list[str] = FRAME_ID,
    since_s: float = SINCE,
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
    idle_ms: int = IDLE,
) -> None:
    """List dead letters: reason, service, source topic/partition/offset, frame id, time."""
    letters = select(read_letters(bootstrap, idle_ms), reason, service, frame_id, since_s)
    for lt in letters:
        d = lt.as_dict()
        if as_json:
            typer.echo(json.dumps(d))
        else:
            typer.echo(
                f"{d['failed_at'][:23]}  {d['service']:11s} {d['reason']:24s} "
                f"{d['source_topic']}[{d['source_partition']}]@{d['source_offset']}  "
                f"{d['frame_id'] or '-'}  {d['detail']}"
            )
    if not as_json:
        typer.echo(f"{len(letters)} dead letters", err=True)


@app.command("replay")
def replay_cmd(
    bootstrap: str = BOOTSTRAP,
    reason: list[str] = REASON,
    service: list[str] = SERVICE,
    frame_id: list[str] = FRAME_ID,
    since_s: float = SINCE,
    dry_run: bool = typer.Option(False, "--dry-run", help="show what would be replayed"),
    idle_ms: int = IDLE,
) -> None:
    """Send the selected letters' original bytes back to their source topic.

    Use after the cause is fixed; a letter that fails again comes back as a new
    letter. The whole selection is read before anything is sent, and each source
    message is sent at most once per run.
    """
    letters = select(read_letters(bootstrap, idle_ms), reason, service, frame_id, since_s)
    skipped = [lt for lt in letters if not replayable(lt)]
    for lt in letters:
        typer.echo(
            f"{'would replay' if dry_run else 'replay'} {lt.msg.source_topic}"
            f"[{lt.msg.source_partition}]@{lt.msg.source_offset} {lt.msg.reason} "
            f"{lt.msg.frame_id or '-'}"
        )
    for lt in skipped:
        typer.echo(f"skip: letter without a source topic ({lt.msg.reason})", err=True)
    if dry_run:
        typer.echo(f"{len(letters) - len(skipped)} would be replayed (dry run)")
        return
    n = replay(bootstrap, letters)
    typer.echo(f"{n} replayed")
