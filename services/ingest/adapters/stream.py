"""RTSP (H.264) and USB (V4L2) cameras through OpenCV, with a watchdog.

OpenCV's FFMPEG capture has two failure modes this driver is built around (checked with
a GStreamer RTSP server): after the server dies `read()` returns False forever while
`isOpened()` stays True, so a failed read releases and reopens the capture; and a server
that hangs blocks `read()` for seconds whatever CAP_PROP_READ_TIMEOUT_MSEC says, so reads
happen on a reader thread, and a reader silent for `stall_s` is abandoned (it releases its
capture when its read returns) and a fresh one takes over. Ingest only ever takes frames
the reader already has, so neither case stalls it or the other cameras.
"""

from __future__ import annotations

import logging
import threading
import time

import cv2

from services.ingest.adapters.driver import CameraSpec, Grab, ThreadedDriver
from services.ingest.logic import redacted

log = logging.getLogger("defectflow.ingest.stream")

OPEN_TIMEOUT_S = 15.0  # an open that hangs longer (server accepts, never answers) is abandoned


class StreamCamera(ThreadedDriver):
    def __init__(self, name: str, spec: CameraSpec) -> None:
        super().__init__(name, spec)
        self._generation = 0  # the reader whose frames count; older ones are abandoned
        self._last_frame = time.monotonic()
        self._watchdog: threading.Thread | None = None
        self._opening = False  # opening an RTSP session takes 1-3 s: watched with open_timeout

    def _source(self) -> tuple[str | int, int]:
        if self.spec.driver == "usb":
            url = self.spec.url or "0"
            return (int(url) if url.isdigit() else url), cv2.CAP_V4L2
        return self.spec.url, cv2.CAP_FFMPEG

    # --- the driver interface ---------------------------------------------------------
    def open(self) -> None:
        self._start_reader()
        self._watchdog = threading.Thread(
            target=self._watch, name=f"watchdog-{self.name}", daemon=True
        )
        self._watchdog.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._generation += 1
        if self._watchdog is not None:
            self._watchdog.join(2)

    # --- reader threads and their watchdog --------------------------------------------
    def _start_reader(self) -> None:
        with self._lock:
            self._generation += 1
            gen = self._generation
            self._last_frame = time.monotonic()
        threading.Thread(
            target=self._read, args=(gen,), name=f"reader-{self.name}-{gen}", daemon=True
        ).start()

    def _current(self, gen: int) -> bool:
        return gen == self._generation and not self._stop.is_set()

    def _read(self, gen: int) -> None:
        source, api = self._source()
        backoff = 0.2
        while self._current(gen):
            self._opening, self._last_frame = True, time.monotonic()
            cap = cv2.VideoCapture(source, api)
            self._opening, self._last_frame = False, time.monotonic()
            try:
                if not cap.isOpened():
                    raise ConnectionError(f"cannot open {redacted(self.spec.url or str(source))}")
                if self._down_since is not None:
                    self._health.reconnects += 1
                self._health.connected = True
                log.info(
                    "camera %s streaming from %s", self.name, redacted(self.spec.url or str(source))
                )
                while self._current(gen):
                    ok, image = cap.read()
                    if not self._current(gen):
                        return  # abandoned while blocked: a newer reader owns the camera
                    if not ok:
                        raise ConnectionError("read failed (stream ended or server gone)")
                    self._frame(image)
                    backoff = 0.2
            except Exception as exc:  # noqa: BLE001 - release, reopen with backoff
                self._went_down(repr(exc))
            finally:
                cap.release()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _frame(self, image) -> None:  # type: ignore[no-untyped-def]
        now = time.monotonic()
        self._last_frame = now
        if self._down_since is not None:
            gap = now - self._down_since
            self._health.gap_s += gap
            self._down_since = None
            log.warning("camera %s back after a %.2f s gap", self.name, gap)
        self._health.frames += 1
        self._pending.fill(Grab(image, time.time_ns(), {}))

    def _went_down(self, why: str) -> None:
        if self._health.connected:
            log.warning("camera %s down: %s; reconnecting", self.name, why)
        if self._down_since is None:
            self._down_since = self._last_frame
        self._health.connected = False
        self._health.last_error = why

    def _watch(self) -> None:
        while not self._stop.wait(min(0.5, self.spec.stall_s / 2)):
            silent = time.monotonic() - self._last_frame
            if silent > (OPEN_TIMEOUT_S if self._opening else self.spec.stall_s):
                log.warning(
                    "camera %s: no frame for %.1f s, replacing its reader", self.name, silent
                )
                self._went_down(f"stalled {silent:.1f} s")
                self._start_reader()
