"""Ingest: read cameras at their frame rate, claim-check the pixels, publish frames."""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import threading
import time
from typing import NamedTuple

from defectflow.v1 import common_pb2, frames_pb2
from prometheus_client import Counter

from services.common import metrics, topics
from services.common.blobstore import LocalBlobStore
from services.common.codec import stamp
from services.common.images import encode_png, sha256
from services.common.kafka_admin import ensure_topics
from services.common.logs import setup_logging
from services.common.stage import EXIT_SHUTDOWN_TIMEOUT, make_producer
from services.ingest.adapters.assignments import LineRecipes
from services.ingest.adapters.cameras import (
    Camera,
    FolderCamera,
    GroundTruthLog,
    SyntheticCamera,
    VideoCamera,
)
from services.ingest.adapters.spool import Spool, Spooled
from services.ingest.config import IngestSettings
from services.ingest.logic import Pacer, new_frame_id

FRAMES_DROPPED = Counter(
    "defectflow_camera_frames_dropped_total",
    "Capture ticks skipped by the drop policy",
    ["line", "camera"],
)
FRAMES_ACCEPTED = Counter(
    "defectflow_frames_accepted_total", "Frames acknowledged by the broker", ["line", "camera"]
)
FRAMES_UNACKED = Counter(
    "defectflow_frames_unacknowledged_total", "Frame sends the broker did not acknowledge (retried)"
)
FRAMES_RESENT = Counter(
    "defectflow_frames_resent_total", "Spooled frames resent after an ingest restart"
)
Counter_ = collections.Counter


def build_cameras(s: IngestSettings) -> list[Camera]:
    cams: list[Camera] = []
    for li in range(s.lines):
        for ci in range(s.cameras_per_line):
            line, station, name = f"line-{li + 1}", f"station-{li + 1}", f"cam-{li + 1}-{ci + 1}"
            if s.source == "synthetic":
                cams.append(
                    SyntheticCamera(
                        line,
                        station,
                        name,
                        s.family,
                        s.seed * 1000 + li * 100 + ci,
                        s.defect_rate,
                        s.defect_types.split(","),
                        (s.width, s.height),
                        *_illumination(s, line),
                        pool=s.synthetic_pool,
                    )
                )
            elif s.source == "folder" and s.source_path:
                cams.append(FolderCamera(line, station, name, s.source_path))
            elif s.source == "video" and s.source_path:
                cams.append(VideoCamera(line, station, name, s.source_path))
            else:
                raise SystemExit(
                    f"DEFECTFLOW_INGEST_SOURCE={s.source!r} needs DEFECTFLOW_INGEST_SOURCE_PATH"
                    if s.source in ("folder", "video")
                    else f"unknown source {s.source!r}"
                )
    return cams


def _illumination(s: IngestSettings, line: str) -> tuple[float, int, float]:
    lines = {x.strip() for x in s.illumination_lines.split(",") if x.strip()}
    if lines and line not in lines:
        return 1.0, 0, 0.0
    return s.illumination_gain, s.illumination_after, s.defocus_sigma


def frame_message(
    s: IngestSettings,
    cam: Camera,
    image,
    blobs: LocalBlobStore,
    seq: int,
    instance: str,
    recipe_id: str | None = None,
    part_id: str = "",
    captured_unix_ns: int = 0,
) -> frames_pb2.Frame:
    received = captured_unix_ns or time.time_ns()
    frame_id = new_frame_id()
    data = encode_png(image)
    h, w = image.shape[:2]
    ref = common_pb2.ImageRef(
        encoding="png",
        width=w,
        height=h,
        channels=1 if image.ndim == 2 else image.shape[2],
        sha256=sha256(data),
        size_bytes=len(data),
    )
    if len(data) > s.inline_max_bytes:
        ref.blob_uri = blobs.put(f"{frame_id}.png", data)
    else:
        ref.inline_data = data
    ctx = common_pb2.FrameContext(
        frame_id=frame_id,
        recipe_id=recipe_id or s.recipe_id,
        recipe_version=0,
        part_id=part_id or f"{cam.name}-{seq:08d}",
        captured_unix_ns=received,
        sequence=seq,
        image=ref,
        source=common_pb2.FrameSource(line=cam.line, station=cam.station, camera=cam.name),
    )
    msg = frames_pb2.Frame(schema_version=topics.SCHEMA_VERSION, context=ctx)
    stamp(msg, "ingest", received, time.time_ns(), instance)
    return msg


class Sender:
    """Sends spooled frames and marks them accepted once the broker acknowledged them."""

    def __init__(self, producer, spool: Spool, truth: GroundTruthLog, log) -> None:  # type: ignore[no-untyped-def]
        self.producer, self.spool, self.truth, self.log = producer, spool, truth, log
        self.unacked: list[Spooled] = []  # captured, not yet acknowledged: retried first
        self.accepted = 0
        self._backoff = 0.5

    def resend_unacked(self, stop: threading.Event) -> bool:
        """The broker must take what was captured before anything new is: resend what it
        has not acknowledged. False after a failed resend and its backoff (capture ticks
        missed meanwhile are dropped by the pacers' policy and counted)."""
        if not self.unacked:
            return True
        if self.send(self.unacked):
            self._backoff = 0.5
            return True
        stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, 10.0)
        return False

    def send(self, items: list[Spooled]) -> bool:
        """True when all were acknowledged; otherwise they stay spooled for a retry."""
        try:
            futures = [self.producer.send(topics.FRAMES, key=i.key, value=i.value) for i in items]
            self.producer.flush(timeout=30)
            for fut in futures:
                fut.get(timeout=30)  # an unacknowledged frame is retried, never silently lost
        except Exception as exc:  # noqa: BLE001 - any failure means "not acknowledged"
            self.log.warning(
                "broker did not acknowledge %d frames, will resend: %r", len(items), exc
            )
            FRAMES_UNACKED.inc(len(items))
            self.unacked = items
            return False
        for i in items:
            self.truth.write(i.frame_id, i.line, i.camera, i.truth)
            FRAMES_ACCEPTED.labels(i.line, i.camera).inc()
        self.truth.flush()
        for (
            i
        ) in items:  # after the accepted log: a crash in between never resends an accepted frame
            self.spool.remove(i.frame_id)
        self.accepted += len(items)
        self.unacked = []
        return True


def recover(spool: Spool, truth: GroundTruthLog) -> tuple[list[Spooled], Counter_]:
    """Spooled frames to resend (not yet accepted) and how far each camera had got."""
    entries = truth.entries()
    accepted = {e["frame_id"] for e in entries}
    progress: Counter_ = collections.Counter((e["line"], e["camera"]) for e in entries)
    resend = []
    for item in spool.pending():
        if item.frame_id in accepted:
            spool.remove(item.frame_id)
        else:
            resend.append(item)
            progress[(item.line, item.camera)] += 1
    return resend, progress


class IngestStart(NamedTuple):
    log: logging.Logger
    instance: str
    blobs: LocalBlobStore
    sender: Sender  # its spool holds what was captured and not yet acknowledged
    progress: Counter_  # frames each (line, camera) got to before a restart


def start_ingest(s: IngestSettings) -> IngestStart:
    """What both ingest loops (folder/synthetic cameras, cameras file) start with: logging,
    /metrics, topics, the spool and the sender, with the frames a previous run captured
    but never got acknowledged queued to be sent first."""
    log = setup_logging("ingest", s.log_level)
    metrics.serve(s.metrics_port, s.metrics_addr)
    ensure_topics(s.kafka_bootstrap)
    truth = GroundTruthLog(s.ground_truth_path)
    spool = Spool(s.spool_dir)
    sender = Sender(make_producer(s.kafka_bootstrap), spool, truth, log)
    resend, progress = recover(spool, truth)
    if resend:
        log.info("resending %d frames captured but not acknowledged before a restart", len(resend))
        FRAMES_RESENT.inc(len(resend))
        sender.unacked = resend
    instance = s.instance or socket.gethostname()
    return IngestStart(log, instance, LocalBlobStore(s.blob_root), sender, progress)


def run(s: IngestSettings, stop: threading.Event) -> int:
    if s.cameras_path is not None:
        from services.ingest.fleet import run_fleet

        return run_fleet(s, stop)
    log, instance, blobs, sender, progress = start_ingest(s)
    cams = build_cameras(s)
    seqs = [progress[(c.line, c.name)] for c in cams]
    for cam, n in zip(cams, seqs, strict=True):
        if n and isinstance(cam, SyntheticCamera):
            cam.skip(n)  # resume the camera where the last run stopped
    line_recipes = LineRecipes(s.line_recipes_path, s.recipe_id)
    start = time.monotonic()
    pacers = [Pacer(1.0 / s.fps, s.max_lag_frames, start) for _ in cams]
    for cam in cams:  # series from the start: "0 dropped" is a figure too
        FRAMES_DROPPED.labels(cam.line, cam.name)
        metrics.LINE_TAKT.labels(cam.line).set(s.takt_s or 1.0 / s.fps)
    active = [True] * len(cams)
    reported_drops = [0] * len(cams)
    while not stop.is_set() and (any(active) or sender.unacked):
        if not sender.resend_unacked(stop):
            continue
        now = time.monotonic()
        batch = []
        for i, cam in enumerate(cams):
            if not active[i] or not pacers[i].due(now):
                continue
            cap = cam.read()
            if cap is None or (s.frames and seqs[i] >= s.frames):
                active[i] = False
                continue
            recipe_id = line_recipes.recipe_for(cam.line)
            msg = frame_message(s, cam, cap.image, blobs, seqs[i], instance, recipe_id)
            seqs[i] += 1
            item = Spooled(
                msg.context.frame_id,
                cam.line,
                cam.name,
                topics.camera_key(cam.line, cam.station, cam.name),
                msg.SerializeToString(),
                cap.truth,
            )
            sender.spool.put(item)
            batch.append(item)
        if batch:
            sender.send(batch)
        for i, cam in enumerate(cams):
            if pacers[i].dropped > reported_drops[i]:
                FRAMES_DROPPED.labels(cam.line, cam.name).inc(pacers[i].dropped - reported_drops[i])
                reported_drops[i] = pacers[i].dropped
        wake = min((p.next_due for p, a in zip(pacers, active, strict=True) if a), default=now)
        stop.wait(max(0.0, wake - time.monotonic()))
    sender.producer.close(timeout=10)
    log.info(
        "ingest done: %d frames accepted, %d dropped, %d left spooled",
        sender.accepted,
        sum(p.dropped for p in pacers),
        len(sender.unacked),
    )
    return sender.accepted


def main() -> None:
    s = IngestSettings()
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        if stop.is_set():
            os._exit(EXIT_SHUTDOWN_TIMEOUT)
        stop.set()
        # a send stuck on an unreachable broker must not outlast Kubernetes' grace period;
        # what it was sending is still in the spool and is resent by the next start
        timer = threading.Timer(s.shutdown_timeout_s, os._exit, args=(EXIT_SHUTDOWN_TIMEOUT,))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run(s, stop)


if __name__ == "__main__":
    main()
