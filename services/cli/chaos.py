"""`defectflow chaos`: the fault test of the delivery guarantee, also run by tests/e2e.

Two lines of synthetic cameras feed the whole pipeline while every service type,
tritonserver and PostgreSQL are killed with SIGKILL in turn and restarted. A
handful of deliberately bad frames go in at the start. At the end the database
must hold exactly one record per frame ingest accepted (ids compared with its
accepted log), no duplicate, and the dead-letter topic only the bad frames.

The broker is not killed: the local Tansu keeps everything in memory, so its
restart loses topics and offsets (see docs/reliability.md for production Kafka).
"""

from __future__ import annotations

import json
import signal
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import sqlalchemy as sa
import typer
from defectflow.v1 import common_pb2, frames_pb2, inspections_pb2
from kafka import KafkaConsumer, KafkaProducer

from services.cli.dlq import read_letters
from services.common import topics
from services.common.images import encode_png

if TYPE_CHECKING:  # importing the stack pulls in model code: only when the command runs
    from services.localstack.stack import LocalStack

app = typer.Typer(help="Fault test: kill -9 each service, Triton and PostgreSQL mid-run.")

# The order of the kills: each one where the previous has not left the component idle
# (a killed consumer's partitions wait a session timeout, ~6 s, before a restarted one
# gets them, and nothing flows downstream of it meanwhile). Ingest first, while its
# cameras run; tritonserver while inference is busy; PostgreSQL while the store writes.
KILLS = ("ingest", "tritonserver", "tiling", "postgres", "inference", "store", "postprocess")
BAD_KEY = b"chaos-bad/"


@dataclass
class Kill:
    target: str
    at_s: float  # since the cameras started
    down_s: float  # from SIGKILL until the restart returned (ready for servers)
    frames_accepted_before: int


@dataclass
class ChaosResult:
    frames_accepted: int = 0
    records_stored: int = 0
    missing: int = 0
    unexpected: int = 0
    db_duplicates: int = 0
    inspections_published: int = 0  # messages on the inspections topic for these frames
    redelivered_frames: int = 0  # frames whose inspection was published more than once
    incomplete_records: int = 0  # REVIEW because tiles did not all arrive in time
    frames_resent_by_ingest: int = 0
    transient_redos: dict[str, int] = field(default_factory=dict)  # batches rewound, per service
    dead_letters: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    unexpected_dead_letters: int = 0
    bad_inputs_sent: int = 0
    bad_inputs_dead_lettered: int = 0
    kills: list[Kill] = field(default_factory=list)
    graceful_exit_codes: dict[str, int | None] = field(default_factory=dict)
    graceful_stop_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def ok(self) -> bool:
        return (
            self.frames_accepted > 0
            and self.missing == 0
            and self.unexpected == 0
            and self.db_duplicates == 0
            and self.unexpected_dead_letters == 0
            and self.bad_inputs_dead_lettered == self.bad_inputs_sent
            and all(rc == 0 for rc in self.graceful_exit_codes.values())
        )

    def table(self) -> str:
        rows = [
            ("frames accepted by ingest", self.frames_accepted),
            ("records stored (new)", self.records_stored),
            ("missing / unexpected records", f"{self.missing} / {self.unexpected}"),
            ("duplicate records in PostgreSQL", self.db_duplicates),
            (
                "inspections published / redelivered frames",
                f"{self.inspections_published} / {self.redelivered_frames}",
            ),
            ("incomplete (REVIEW) records", self.incomplete_records),
            ("frames resent from ingest's spool", self.frames_resent_by_ingest),
            ("batches rewound and redone (Transient)", self.transient_redos),
            (
                "bad inputs sent / dead-lettered",
                f"{self.bad_inputs_sent} / {self.bad_inputs_dead_lettered}",
            ),
            ("dead letters (reasons)", f"{self.dead_letters} {self.dead_letter_reasons}"),
            ("other dead letters", self.unexpected_dead_letters),
            ("wall time", f"{self.wall_s:.0f} s"),
        ]
        lines = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
        lines += ["", "| kill -9 | at | down for | frames accepted before |", "|---|---|---|---|"]
        lines += [
            f"| {k.target} | {k.at_s:.1f} s | {k.down_s:.1f} s | {k.frames_accepted_before} |"
            for k in self.kills
        ]
        lines += ["", "| SIGTERM at the end | exit code | seconds |", "|---|---|---|"]
        lines += [
            f"| {n} | {rc} | {self.graceful_stop_s.get(n, 0):.1f} |"
            for n, rc in self.graceful_exit_codes.items()
        ]
        return "\n".join(lines)


def bad_frames(recipe_id: str) -> list[tuple[str, bytes]]:
    """Deliberately bad frames, one per reason a frame can be refused, with the reason."""

    def frame(frame_id: str, image: common_pb2.ImageRef, recipe: str = recipe_id, v: int = 1):
        ctx = common_pb2.FrameContext(
            frame_id=frame_id,
            recipe_id=recipe,
            source=common_pb2.FrameSource(line="line-x", station="station-x", camera="cam-x"),
            image=image,
        )
        return frames_pb2.Frame(schema_version=v, context=ctx).SerializeToString()

    png = encode_png(np.full((64, 64, 3), 128, np.uint8))
    ok_image = common_pb2.ImageRef(encoding="png", width=64, height=64, channels=3)
    ok_image.inline_data = png
    # a decompression bomb: the header declares 100000 x 100000 pixels
    bomb = png[:16] + struct.pack(">II", 100_000, 100_000) + png[24:]
    bomb_image = common_pb2.ImageRef(encoding="png", width=100_000, height=100_000, channels=3)
    bomb_image.inline_data = bomb
    cut_image = common_pb2.ImageRef(encoding="png", width=64, height=64, channels=3)
    cut_image.inline_data = png[: len(png) // 2]
    valid = frame(uuid.uuid4().hex, ok_image)
    return [
        ("undecodable_protobuf", b"\x08\x01garbage\xff\xff"),
        ("undecodable_protobuf", valid[: len(valid) - 7]),  # truncated protobuf
        ("unknown_schema_version", frame(uuid.uuid4().hex, ok_image, v=9)),
        ("unknown_recipe", frame(uuid.uuid4().hex, ok_image, recipe="no-such-recipe")),
        ("image_too_large", frame(uuid.uuid4().hex, bomb_image)),
        ("corrupt_image", frame(uuid.uuid4().hex, cut_image)),
    ]


def accepted_frames(truth_path: Path) -> list[dict]:
    if not truth_path.exists():
        return []
    out = []
    for line in truth_path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line torn by the kill; ingest cuts it off when it restarts
            continue
    return out


def _db_ids(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("select frame_id from inspections")).scalars())
    finally:
        engine.dispose()


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - a component restarting: ask again
            pass
        time.sleep(1.0)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def run_chaos(
    stack: LocalStack,
    lines: int = 2,
    cameras_per_line: int = 2,
    frames_per_camera: int = 120,
    fps: float = 1.5,
    size: int = 240,
    first_kill_s: float = 6.0,
    kill_every_s: float = 12.0,
    drain_timeout_s: float = 150.0,
    log: Callable[[str], None] = print,
    truth_path: Path | None = None,
) -> ChaosResult:
    """Run the fault scenario on a stack whose broker, Triton and PostgreSQL are started."""
    assert stack.broker and stack.postgres and stack.triton
    t_start = time.monotonic()
    res = ChaosResult()
    stack.stop_services()
    t0_ns = time.time_ns()
    truth_path = truth_path or stack.workdir / f"chaos-{uuid.uuid4().hex[:8]}-accepted.jsonl"
    stack.start_pipeline()  # the store creates the schema before its query port opens
    before = set(_db_ids(stack.postgres.url))

    bad = bad_frames("brushed-metal")
    producer = KafkaProducer(bootstrap_servers=stack.broker.bootstrap, acks="all")
    for i, (_, value) in enumerate(bad):
        producer.send(topics.FRAMES, key=BAD_KEY + str(i).encode(), value=value).get(10)
    producer.close()
    res.bad_inputs_sent = len(bad)

    ingest = stack.start_service(
        "ingest",
        {
            "lines": str(lines),
            "cameras_per_line": str(cameras_per_line),
            "fps": str(fps),
            "frames": str(frames_per_camera),
            "width": str(size),
            "height": str(size),
            "seed": "11",
            "ground_truth_path": str(truth_path),
        },
    )
    cams_start = time.monotonic()
    for i, target in enumerate(KILLS):
        due = cams_start + first_kill_s + i * kill_every_s
        time.sleep(max(0.0, due - time.monotonic()))
        at = time.monotonic() - cams_start
        n_before = len(accepted_frames(truth_path))
        t_kill = time.monotonic()
        if target == "tritonserver":
            stack.triton.process.kill()
            time.sleep(1.0)
            stack.restart_triton()
        elif target == "postgres":
            stack.postgres.process.kill()
            time.sleep(1.0)
            stack.restart_postgres()
        else:
            proc = stack.services[target]
            if target == "ingest" and not proc.alive():
                raise RuntimeError("ingest finished before it could be killed: slow it down")
            proc.kill()
            time.sleep(1.0)
            stack.restart_service(target)
        res.kills.append(Kill(target, at, time.monotonic() - t_kill, n_before))
        log(f"kill -9 {target} at {at:.1f} s, back after {res.kills[-1].down_s:.1f} s")

    ingest = stack.services["ingest"]
    assert ingest.proc is not None
    rc = ingest.proc.wait(timeout=max(30.0, frames_per_camera / fps * 2))
    if rc != 0:
        raise RuntimeError(f"ingest exited with {rc}; see {ingest.log_path}")
    accepted = {e["frame_id"] for e in accepted_frames(truth_path)}
    res.frames_accepted = len(accepted)
    log(f"ingest done: {len(accepted)} frames accepted; waiting for the pipeline to drain")

    pg = stack.postgres  # the one restarted after its kill
    assert pg is not None
    _wait(
        lambda: accepted <= set(_db_ids(pg.url)),
        drain_timeout_s,
        f"{len(accepted)} records in PostgreSQL",
    )
    time.sleep(3.0)  # a duplicate or a stray record would arrive now

    ids = _db_ids(pg.url)
    new = [f for f in ids if f not in before]
    res.records_stored = len(set(new))
    res.db_duplicates = len(ids) - len(set(ids))
    res.missing = len(accepted - set(new))
    res.unexpected = len(set(new) - accepted)
    engine = sa.create_engine(pg.url)
    with engine.connect() as conn:
        res.incomplete_records = conn.execute(
            sa.text("select count(*) from inspections where frame_id = any(:ids) and not complete"),
            {"ids": list(accepted)},
        ).scalar_one()
    engine.dispose()

    published = _published_inspections(stack.broker.bootstrap, accepted)
    res.inspections_published = sum(published.values())
    res.redelivered_frames = sum(1 for n in published.values() if n > 1)
    res.frames_resent_by_ingest = _resent(ingest.log_path)
    for name in ("tiling", "inference", "postprocess", "store"):
        text = stack.services[name].log_path.read_text(errors="replace")
        res.transient_redos[name] = text.count("transient failure")

    letters = [lt for lt in read_letters(stack.broker.bootstrap) if lt.msg.failed_unix_ns >= t0_ns]
    res.dead_letters = len(letters)
    res.dead_letter_reasons = dict(Counter(lt.msg.reason for lt in letters))
    res.unexpected_dead_letters = sum(1 for lt in letters if not lt.msg.key.startswith(BAD_KEY))
    expected = {BAD_KEY + str(i).encode(): reason for i, (reason, _) in enumerate(bad)}
    got = {(lt.msg.key, lt.msg.reason) for lt in letters}
    res.bad_inputs_dead_lettered = sum(1 for k, r in expected.items() if (k, r) in got)

    for name in ("tiling", "inference", "postprocess", "store"):
        proc = stack.services[name]
        t = time.monotonic()
        res.graceful_exit_codes[name] = proc.stop(timeout_s=30)
        res.graceful_stop_s[name] = time.monotonic() - t
    stack.services.clear()
    res.wall_s = time.monotonic() - t_start
    return res


def _published_inspections(bootstrap: str, ids: set[str]) -> Counter:
    consumer = KafkaConsumer(
        topics.INSPECTIONS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    n: Counter = Counter()
    for rec in consumer:
        fid = inspections_pb2.Inspection.FromString(rec.value).context.frame_id
        if fid in ids:
            n[fid] += 1
    consumer.close()
    return n


def _resent(ingest_log: Path) -> int:
    total = 0
    for line in ingest_log.read_text(errors="replace").splitlines():
        if "resending" in line:
            try:
                total += int(line.split("resending ")[1].split()[0])
            except (IndexError, ValueError):
                continue
    return total


@app.callback(invoke_without_command=True)
def chaos(
    workdir: Path = typer.Option(Path("var/chaos"), help="logs, models, database"),
    frames_per_camera: int = typer.Option(120),
    fps: float = typer.Option(1.5, help="frames per second per camera"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Start the stack, run the fault scenario, print the result table; exit 1 if it failed."""
    from services.localstack.stack import LocalStack

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stack = LocalStack(workdir.resolve())
    try:
        stack.start_components()
        res = run_chaos(stack, frames_per_camera=frames_per_camera, fps=fps, log=typer.echo)
    finally:
        stack.stop()
    typer.echo(json.dumps(asdict(res), indent=2) if as_json else res.table())
    if not res.ok():
        raise typer.Exit(1)
