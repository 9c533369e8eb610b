"""Frames out of ingest: the frame message, the write-ahead spool's sender (a frame is
accepted only once the broker acknowledged it) and the recovery of what a previous run
captured but never got acknowledged."""

from __future__ import annotations

import collections
import logging
import socket
import threading
import time
from typing import NamedTuple

from defectflow.v1 import common_pb2, frames_pb2

from services.common import metrics, topics
from services.common.blobstore import LocalBlobStore
from services.common.codec import stamp
from services.common.images import encode_png, sha256
from services.common.kafka_admin import ensure_topics
from services.common.logs import setup_logging
from services.common.stage import make_producer
from services.ingest.adapters.cameras import GroundTruthLog
from services.ingest.adapters.driver import CameraSpec
from services.ingest.adapters.spool import Spool, Spooled
from services.ingest.config import IngestSettings
from services.ingest.logic import new_frame_id
from services.ingest.metrics import FRAMES_ACCEPTED, FRAMES_RESENT, FRAMES_UNACKED

Counter_ = collections.Counter


def frame_message(
    s: IngestSettings,
    camera: str,
    spec: CameraSpec,
    image,
    blobs: LocalBlobStore,
    seq: int,
    instance: str,
    recipe_id: str | None = None,
    part_id: str = "",
    captured_unix_ns: int = 0,
) -> frames_pb2.Frame:
    """The frame message of one capture: the pixels inline, or claim-checked in the blob
    store when larger than `inline_max_bytes`."""
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
        part_id=part_id or f"{camera}-{seq:08d}",
        captured_unix_ns=received,
        sequence=seq,
        image=ref,
        source=common_pb2.FrameSource(line=spec.line, station=spec.station, camera=camera),
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
    """What ingest starts with: logging, /metrics, topics, the spool and the sender, with
    the frames a previous run captured but never got acknowledged queued to be sent first."""
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
