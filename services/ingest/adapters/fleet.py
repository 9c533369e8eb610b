"""The open cameras: one driver per camera, from the cameras file (kept in step with it at
runtime) or from the settings' lines x cameras of one source, and their health as metrics.

The cameras file (YAML, `DEFECTFLOW_INGEST_CAMERAS_PATH`; in Kubernetes a ConfigMap key) is
re-read when it changes: cameras added are opened, cameras removed are closed, a camera
whose settings changed is reopened; the others keep flowing. A broken file keeps the last
good one and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from services.common.watched import WatchedFile
from services.ingest.adapters.cameras import FolderCamera, SyntheticCamera, VideoCamera
from services.ingest.adapters.driver import (
    CamerasFile,
    CameraSpec,
    Driver,
    Health,
    SourceDriver,
    parse_cameras,
)
from services.ingest.config import IngestSettings
from services.ingest.metrics import CAMERA_EVENTS, CAMERA_GAP, CAMERA_UP

log = logging.getLogger("defectflow.ingest.cameras")


def make_driver(name: str, spec: CameraSpec) -> Driver:
    """A closed driver for one camera."""
    if spec.driver == "gige":
        from services.ingest.adapters.gige import AravisCamera  # optional extra: defectflow[gige]

        return AravisCamera(name, spec)
    if spec.driver in ("rtsp", "usb"):
        from services.ingest.adapters.stream import StreamCamera

        return StreamCamera(name, spec)
    if spec.driver == "synthetic":
        cam: SyntheticCamera | FolderCamera | VideoCamera = SyntheticCamera(
            spec.line,
            spec.station,
            name,
            spec.family,
            spec.seed,
            spec.defect_rate,
            list(spec.defect_types),
            (spec.width, spec.height),
            spec.illumination_gain,
            spec.illumination_after,
            spec.defocus_sigma,
            pool=spec.pool,
        )
    elif spec.driver == "folder":
        cam = FolderCamera(spec.line, spec.station, name, Path(spec.path))
    else:
        cam = VideoCamera(spec.line, spec.station, name, Path(spec.path))
    return SourceDriver(name, spec, cam)


def settings_cameras(s: IngestSettings) -> CamerasFile:
    """The cameras the settings describe without a cameras file: `lines` x
    `cameras_per_line` of one source (synthetic parts, an image folder or a video file)."""
    if s.source not in ("synthetic", "folder", "video"):
        raise SystemExit(f"unknown source {s.source!r}; choose synthetic, folder or video")
    if s.source != "synthetic" and not s.source_path:
        raise SystemExit(
            f"DEFECTFLOW_INGEST_SOURCE={s.source!r} needs DEFECTFLOW_INGEST_SOURCE_PATH"
        )
    drifting = {x.strip() for x in s.illumination_lines.split(",") if x.strip()}
    cameras = {}
    for li in range(s.lines):
        line = f"line-{li + 1}"
        drift = not drifting or line in drifting
        for ci in range(s.cameras_per_line):
            cameras[f"cam-{li + 1}-{ci + 1}"] = CameraSpec(
                driver=s.source,  # type: ignore[arg-type]
                line=line,
                station=f"station-{li + 1}",
                fps=s.fps,
                path=str(s.source_path or ""),
                family=s.family,
                seed=s.seed * 1000 + li * 100 + ci,
                width=s.width,
                height=s.height,
                defect_rate=s.defect_rate,
                defect_types=s.defect_types.split(","),
                illumination_gain=s.illumination_gain if drift else 1.0,
                illumination_after=s.illumination_after if drift else 0,
                defocus_sigma=s.defocus_sigma if drift else 0.0,
                pool=s.synthetic_pool,
            )
    return CamerasFile(cameras=cameras)


class CameraFleet:
    """The open drivers: kept in step with a cameras file, or opened once from `fixed`."""

    def __init__(
        self,
        path: Path | None = None,
        factory: Callable[[str, CameraSpec], Driver] = make_driver,
        fixed: CamerasFile | None = None,
    ) -> None:
        if (path is None) == (fixed is None):
            raise ValueError("a fleet follows either a cameras file or a fixed set of cameras")
        self.path = Path(path) if path is not None else None
        self.factory = factory
        self.config = CamerasFile()
        self.drivers: dict[str, Driver] = {}
        self.file = WatchedFile(self.path) if self.path is not None else None
        self._fixed = fixed
        self.added: list[str] = []
        self.removed: list[str] = []

    @property
    def follows_file(self) -> bool:
        return self.file is not None

    def refresh(self) -> bool:
        """Apply a changed file (or open the fixed cameras the first time); True when
        cameras were added, removed or reopened."""
        if self.file is None:
            new, self._fixed = self._fixed, None
            if new is None:
                return False
        else:
            text = self.file.changed()
            if text is None:
                return False
            try:
                new = parse_cameras(text)
            except ValueError as exc:
                log.error("cameras file %s ignored, keeping the last good one: %s", self.path, exc)
                return False
        old = self.config.cameras
        self.added = [n for n, s in new.cameras.items() if old.get(n) != s]
        self.removed = [n for n, s in old.items() if new.cameras.get(n) != s]
        for name in self.removed:
            self.drivers.pop(name).close()
            log.info("camera %s removed", name)
        for name in self.added:
            driver = self.factory(name, new.cameras[name])
            driver.open()
            self.drivers[name] = driver
            log.info("camera %s added (%s)", name, new.cameras[name].driver)
        self.config = new
        return bool(self.added or self.removed)

    def at_station(self, station: str) -> list[Driver]:
        return [d for d in self.drivers.values() if d.spec.station == station]

    def close(self) -> None:
        for d in self.drivers.values():
            d.close()
        self.drivers.clear()


class HealthExport:
    """Turns each driver's cumulative health into metric increments."""

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
