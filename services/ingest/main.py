"""Ingest: one loop for every camera. It asks each camera for frames (free-running cameras
at their frame rate, PLC-triggered stations when the PLC announces a part), claim-checks
the pixels, spools each frame and publishes it, and counts a frame accepted only once the
broker acknowledged it.

The cameras come from the cameras file (docs/cameras.md: GigE Vision, RTSP, USB,
synthetic, folder, video; followed at runtime) or, without one, from the settings' lines x
cameras of one source. Stations listed under the file's `plc_stations` capture on the PLC's
part ids (its PartId node, services/common/opcua.py); the others free-run, tagged
`<camera>-<seq>`.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time

from services.common import metrics, topics
from services.common.opcua import PartTrigger, PlcLink
from services.common.stage import EXIT_SHUTDOWN_TIMEOUT
from services.ingest.adapters.assignments import LineRecipes
from services.ingest.adapters.cameras import SyntheticCamera
from services.ingest.adapters.driver import SourceDriver
from services.ingest.adapters.fleet import CameraFleet, HealthExport, settings_cameras
from services.ingest.adapters.publish import frame_message, start_ingest
from services.ingest.adapters.spool import Spooled
from services.ingest.config import IngestSettings
from services.ingest.logic import Pacer
from services.ingest.metrics import CAMERAS_ACTIVE, FRAMES_DROPPED, PLC_TRIGGERS

POLL_S = 0.005  # how often triggers and camera threads are checked: the added trigger latency


def run(s: IngestSettings, stop: threading.Event) -> int:
    """Capture until stopped (with a cameras file) or until every camera is finished (a
    source exhausted, or `frames` per camera taken) and every frame acknowledged."""
    log, instance, blobs, sender, progress = start_ingest(s)
    line_recipes = LineRecipes(s.line_recipes_path, s.recipe_id)
    if s.cameras_path is not None:
        fleet = CameraFleet(s.cameras_path)
    else:
        fleet = CameraFleet(fixed=settings_cameras(s))
    fleet.refresh()
    # each camera goes on from where the last run stopped: its sequence numbers, and a
    # synthetic camera's parts, continue instead of starting again
    seqs: dict[str, int] = {}
    done: set[str] = set()  # cameras with their `frames` taken
    for name, d in fleet.drivers.items():
        seqs[name] = progress[(d.spec.line, name)]
        if seqs[name] and isinstance(d, SourceDriver) and isinstance(d.camera, SyntheticCamera):
            d.camera.skip(seqs[name])
        if s.frames and seqs[name] >= s.frames:
            done.add(name)
    triggers: queue.Queue[PartTrigger] = queue.Queue()
    link = None
    if s.plc_endpoint and fleet.config.plc_stations:
        link = PlcLink(
            s.plc_endpoint,
            fleet.config.plc_stations,
            triggers.put,
            s.plc_namespace,
            s.plc_publishing_ms,
        ).start()
    pacers: dict[str, Pacer] = {}
    health = HealthExport()
    next_check = 0.0
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_check:
            next_check = now + 1.0
            if fleet.refresh() and link is not None and fleet.config.plc_stations != link.stations:
                log.warning("plc_stations changed: restart ingest to follow new stations")
            CAMERAS_ACTIVE.set(len(fleet.drivers))
            for name, d in fleet.drivers.items():
                health.update(name, d.health())
        if not sender.resend_unacked(stop):
            continue
        finished = all(d.finished or n in done for n, d in fleet.drivers.items())
        if finished and not fleet.follows_file and not sender.unacked:
            break
        plc_stations = set(fleet.config.plc_stations) if link is not None else set()
        while True:
            try:
                t = triggers.get_nowait()
            except queue.Empty:
                break
            PLC_TRIGGERS.labels(t.station).inc()
            for d in fleet.at_station(t.station):
                d.request(t.part_id)
        for name, d in list(fleet.drivers.items()):
            if d.spec.station in plc_stations or d.finished or name in done:
                continue
            pacer = pacers.get(name)
            if pacer is None or pacer.period_s != 1.0 / d.spec.fps:
                pacer = pacers[name] = Pacer(1.0 / d.spec.fps, s.max_lag_frames, now)
                FRAMES_DROPPED.labels(d.spec.line, name)  # a series from the start: 0 is a figure
                metrics.LINE_TAKT.labels(d.spec.line).set(s.takt_s or 1.0 / d.spec.fps)
            dropped = pacer.dropped
            if pacer.due(now):
                d.request(f"{name}-{seqs.get(name, 0):08d}")
            if pacer.dropped > dropped:
                FRAMES_DROPPED.labels(d.spec.line, name).inc(pacer.dropped - dropped)
        batch = []
        for name, d in list(fleet.drivers.items()):
            for tag, grab in d.take():
                seq = seqs.get(name, 0)
                seqs[name] = seq + 1
                if s.frames and seqs[name] >= s.frames:
                    done.add(name)
                msg = frame_message(
                    s,
                    name,
                    d.spec,
                    grab.image,
                    blobs,
                    seq,
                    instance,
                    line_recipes.recipe_for(d.spec.line),
                    part_id=tag,
                    captured_unix_ns=grab.captured_unix_ns,
                )
                item = Spooled(
                    msg.context.frame_id,
                    d.spec.line,
                    name,
                    topics.camera_key(d.spec.line, d.spec.station, name),
                    msg.SerializeToString(),
                    {"part_id": tag, **(grab.truth or {})},
                )
                sender.spool.put(item)
                batch.append(item)
        if batch:
            sender.send(batch)
        # triggers and cameras on their own threads are answered within milliseconds;
        # sources that read when asked only need waking at the next frame due
        wake = min((p.next_due for p in pacers.values()), default=now + POLL_S)
        polled = link is not None or not all(
            isinstance(d, SourceDriver) for d in fleet.drivers.values()
        )
        wait = wake - time.monotonic()
        stop.wait(max(0.001, min(POLL_S, wait) if polled or fleet.follows_file else wait))
    if link is not None:
        link.stop()
    fleet.close()
    sender.producer.close(timeout=10)
    log.info(
        "ingest done: %d frames accepted, %d dropped, %d left spooled",
        sender.accepted,
        sum(p.dropped for p in pacers.values()),
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
