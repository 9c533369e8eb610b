"""Ingest from a cameras file: any mix of drivers, changed at runtime, tagged by the PLC.

Stations listed under `plc_stations` capture when the PLC announces a part (its PartId
node, services/common/opcua.py): each camera of the station is asked for one frame tagged
with the PLC's part id. Other cameras free-run at their `fps`, tagged `<camera>-<seq>`.
Frames go through the same write-ahead spool and acknowledged send as the classic sources.
"""

from __future__ import annotations

import queue
import sys
import threading
import time

from prometheus_client import Counter, Gauge

from services.common import topics
from services.common.opcua import PartTrigger, PlcLink
from services.ingest.adapters.assignments import LineRecipes
from services.ingest.adapters.drivers import CameraFleet, Driver, Health
from services.ingest.adapters.spool import Spooled
from services.ingest.config import IngestSettings
from services.ingest.logic import Pacer

CAMERA_UP = Gauge("defectflow_camera_connected", "1 while the camera delivers", ["camera"])
CAMERA_EVENTS = Counter(
    "defectflow_camera_events_total",
    "Camera trouble: kind=incomplete (broken buffer), missed (a request got no frame in "
    "time), reconnect",
    ["camera", "kind"],
)
CAMERA_GAP = Counter(
    "defectflow_camera_gap_seconds_total", "Time without frames while a camera was down", ["camera"]
)
PLC_TRIGGERS = Counter(
    "defectflow_ingest_plc_triggers_total", "Parts the PLC announced, by station", ["station"]
)
POLL_S = 0.005  # how often triggers and camera threads are checked: the added trigger latency
CAMERAS_ACTIVE = Gauge("defectflow_cameras_active", "Cameras open from the cameras file")


def _ingest_main():  # type: ignore[no-untyped-def]
    """services.ingest.main as loaded: under `python -m` it is __main__, and importing it
    again would register its Prometheus metrics twice."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == "services.ingest.main":
        return main
    import services.ingest.main as loaded

    return loaded


class _Cam:
    """What `frame_message` needs to know about a camera."""

    def __init__(self, name: str, d: Driver) -> None:
        self.name, self.line, self.station = name, d.spec.line, d.spec.station


class HealthExport:
    """Turns each driver's cumulative health into counter increments."""

    def __init__(self) -> None:
        self.last: dict[str, Health] = {}

    def update(self, name: str, h: Health) -> None:
        prev = self.last.get(name, Health())
        CAMERA_UP.labels(name).set(1 if h.connected else 0)
        for kind, now, before in (
            ("incomplete", h.incomplete, prev.incomplete),
            ("missed", h.missed, prev.missed),
            ("reconnect", h.reconnects, prev.reconnects),
        ):
            if now > before:
                CAMERA_EVENTS.labels(name, kind).inc(now - before)
        if h.gap_s > prev.gap_s:
            CAMERA_GAP.labels(name).inc(h.gap_s - prev.gap_s)
        self.last[name] = Health(**vars(h))


def run_fleet(s: IngestSettings, stop: threading.Event) -> int:
    assert s.cameras_path is not None
    m = _ingest_main()
    FRAMES_DROPPED, frame_message = m.FRAMES_DROPPED, m.frame_message  # noqa: N806
    log, instance, blobs, sender, _ = m.start_ingest(s)
    line_recipes = LineRecipes(s.line_recipes_path, s.recipe_id)
    fleet = CameraFleet(s.cameras_path)
    fleet.refresh()
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
    seqs: dict[str, int] = {}
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
            if d.spec.station in plc_stations or d.finished:
                continue
            pacer = pacers.get(name)
            if pacer is None or pacer.period_s != 1.0 / d.spec.fps:
                pacer = pacers[name] = Pacer(1.0 / d.spec.fps, s.max_lag_frames, now)
                FRAMES_DROPPED.labels(d.spec.line, name)
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
                cam = _Cam(name, d)
                msg = frame_message(
                    s,
                    cam,  # type: ignore[arg-type]
                    grab.image,
                    blobs,
                    seq,
                    instance,
                    line_recipes.recipe_for(cam.line),
                    part_id=tag,
                    captured_unix_ns=grab.captured_unix_ns,
                )
                item = Spooled(
                    msg.context.frame_id,
                    cam.line,
                    name,
                    topics.camera_key(cam.line, cam.station, name),
                    msg.SerializeToString(),
                    {"part_id": tag, **(grab.truth or {})},
                )
                sender.spool.put(item)
                batch.append(item)
        if batch:
            sender.send(batch)
        # triggers are answered within milliseconds; free-running cameras at their rate
        wake = min((p.next_due for p in pacers.values()), default=now + POLL_S)
        stop.wait(max(0.001, min(POLL_S, wake - time.monotonic())))
    if link is not None:
        link.stop()
    fleet.close()
    sender.producer.close(timeout=10)
    log.info("ingest done: %d frames accepted", sender.accepted)
    return sender.accepted
