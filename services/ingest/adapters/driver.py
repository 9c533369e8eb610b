"""One small interface for every camera ingest reads, and the cameras file that selects them
(the fleet that keeps the drivers in step with it: adapters/fleet.py).

A driver is opened, asked for frames by tag (`request`: a PLC part id, or a sequence
number at a free-running camera's frame rate), hands back the frames it has (`take`,
never blocking), reports its health and is closed. Drivers that talk to hardware or a
network (GigE Vision, RTSP, USB) acquire on their own thread, so a hung camera never
stalls ingest: its requests time out, are counted as missed, and the PLC's fail-safe
decides the part.

The cameras file (YAML, `DEFECTFLOW_INGEST_CAMERAS_PATH`; in Kubernetes a ConfigMap key) is
re-read when it changes: cameras added are opened, cameras removed are closed, a camera
whose settings changed is reopened; the others keep flowing. A broken file keeps the last
good one and is logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.ingest.adapters.cameras import Source

log = logging.getLogger("defectflow.ingest.cameras")


class CameraSpec(BaseModel):
    """One camera in the cameras file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    driver: Literal["gige", "rtsp", "usb", "synthetic", "folder", "video"]
    line: str
    station: str
    fps: float = Field(2.0, gt=0)  # free-run request rate when the station is not PLC-triggered
    frame_timeout_s: float = Field(1.0, gt=0)  # a request with no frame by then is missed
    # gige (Aravis): device id, serial, or IP address; GenICam settings
    device: str = ""
    pixel_format: str = "Mono8"  # Mono8 | Mono16 | RGB8 | BayerRG8 | BayerGR8 | BayerGB8 | BayerBG8
    region: tuple[int, int, int, int] | None = None  # x, y, width, height
    exposure_us: float | None = None
    gain_db: float | None = None
    trigger: Literal["free-run", "software", "hardware"] = "free-run"
    trigger_source: str = "Line0"  # hardware trigger input
    packet_size: int | None = None  # GigE Vision stream packet size (jumbo frames: 8000+)
    # rtsp / usb (OpenCV FFMPEG / V4L2)
    url: str = ""  # rtsp://...; usb: the device index or /dev/videoN
    stall_s: float = Field(3.0, gt=0)  # no frame for this long: the reader is replaced
    # synthetic / folder / video
    path: str = ""
    family: str = "brushed_metal"
    seed: int = 0
    width: int = 512
    height: int = 512
    defect_rate: float = 0.3
    defect_types: list[str] = ["scratch", "spot", "hole", "contamination", "crack"]
    # synthetic: after `illumination_after` parts the lamp changes by `illumination_gain` and
    # the lens defocuses by `defocus_sigma` px (drift demos and tests); `pool` > 0 renders
    # that many parts and shows them again in turn (benchmarks: a camera costs no CPU)
    illumination_gain: float = 1.0
    illumination_after: int = 0
    defocus_sigma: float = Field(0.0, ge=0.0)
    pool: int = 0


class CamerasFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    plc_stations: list[str] = []  # stations that follow the PLC's part id
    cameras: dict[str, CameraSpec] = {}


@dataclass(frozen=True)
class Grab:
    image: np.ndarray
    captured_unix_ns: int  # host clock when the frame arrived (camera clock in `meta`)
    meta: dict = field(default_factory=dict)
    truth: dict | None = None


@dataclass
class Health:
    connected: bool = False
    frames: int = 0
    incomplete: int = 0  # buffers the camera delivered broken (lost packets)
    missed: int = 0  # requests that got no frame in time
    reconnects: int = 0
    gap_s: float = 0.0  # time without frames while the camera was down, summed
    last_error: str = ""


class Driver(Protocol):
    name: str
    spec: CameraSpec
    finished: bool  # a file or folder source is exhausted

    def open(self) -> None: ...

    def request(self, tag: str) -> None: ...

    def take(self) -> list[tuple[str, Grab]]: ...

    def health(self) -> Health: ...

    def close(self) -> None: ...


class Pending:
    """Tags waiting for a frame, oldest first; the ones past their timeout are missed."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.tags: deque[tuple[str, float]] = deque()
        self.lock = threading.Lock()
        self.ready: list[tuple[str, Grab]] = []

    def add(self, tag: str) -> None:
        with self.lock:
            self.tags.append((tag, time.monotonic()))

    def expire(self, health: Health) -> None:
        now = time.monotonic()
        with self.lock:
            while self.tags and now - self.tags[0][1] > self.timeout_s:
                tag, _ = self.tags.popleft()
                health.missed += 1
                log.warning("no frame for %s within %.1f s: missed", tag, self.timeout_s)

    def fill(self, grab: Grab, not_before: float = 0.0) -> bool:
        """Give the frame to the oldest tag requested before it arrived."""
        with self.lock:
            if not self.tags or self.tags[0][1] < not_before:
                return False
            tag, _ = self.tags.popleft()
            self.ready.append((tag, grab))
            return True

    def waiting(self) -> int:
        with self.lock:
            return len(self.tags)

    def take(self) -> list[tuple[str, Grab]]:
        with self.lock:
            out, self.ready = self.ready, []
            return out


class ThreadedDriver:
    """What the drivers that acquire on their own thread (GigE Vision, RTSP, USB) share: the
    thread fills requested tags through `Pending`; ingest only takes what is there."""

    def __init__(self, name: str, spec: CameraSpec) -> None:
        self.name, self.spec = name, spec
        self.finished = False
        self._health = Health()
        self._pending = Pending(spec.frame_timeout_s)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._down_since: float | None = None

    def request(self, tag: str) -> None:
        self._pending.add(tag)

    def take(self) -> list[tuple[str, Grab]]:
        self._pending.expire(self._health)
        return self._pending.take()

    def health(self) -> Health:
        return self._health


class SourceDriver:
    """The synthetic, folder and video sources: they read synchronously, in `request`."""

    def __init__(self, name: str, spec: CameraSpec, camera: Source) -> None:
        self.name, self.spec, self.camera = name, spec, camera
        self.finished = False
        self._ready: list[tuple[str, Grab]] = []
        self._health = Health(connected=True)

    def open(self) -> None:
        return None

    def request(self, tag: str) -> None:
        if self.finished:
            self._health.missed += 1
            return
        cap = self.camera.read()
        if cap is None:
            self.finished = True
            return
        self._health.frames += 1
        self._ready.append((tag, Grab(cap.image, time.time_ns(), {}, cap.truth)))

    def take(self) -> list[tuple[str, Grab]]:
        out, self._ready = self._ready, []
        return out

    def health(self) -> Health:
        return self._health

    def close(self) -> None:
        return None


def parse_cameras(text: str) -> CamerasFile:
    """The cameras file's content, validated. Raises ValueError saying what is wrong."""
    try:
        data = yaml.safe_load(text) or {}
        return CamerasFile.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise ValueError(str(exc)) from exc
