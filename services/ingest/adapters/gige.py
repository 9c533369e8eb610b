"""GigE Vision / GenICam cameras through Aravis (optional: `pip install defectflow[gige]`
plus the system's Aravis typelib, Debian `gir1.2-aravis-0.8`).

One acquisition thread per camera pops buffers with a bounded timeout, so no camera can
stall ingest. Free-run cameras stream at their frame rate and the next frame after a
request answers it; software-triggered cameras fire one exposure per request; hardware-
triggered ones expose on their trigger line (wired to the PLC) and answer requests in
order. Incomplete buffers (lost packets) are counted and not delivered. A camera that
drops off the network (control lost, or no buffer while frames are due) is closed and
reopened with backoff; the time without frames is counted as a gap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from services.ingest.adapters.driver import CameraSpec, Grab, ThreadedDriver
from services.ingest.adapters.pixels import to_image

log = logging.getLogger("defectflow.ingest.gige")

N_BUFFERS = 8


def aravis():  # type: ignore[no-untyped-def]
    """The Aravis module, with a message that says how to get it when missing."""
    try:
        import gi

        gi.require_version("Aravis", "0.8")
        from gi.repository import Aravis
    except (ImportError, ValueError) as exc:
        raise RuntimeError(
            "GigE Vision cameras need Aravis: apt-get install gir1.2-aravis-0.8 and "
            "pip install 'defectflow[gige]' (PyGObject)"
        ) from exc
    return Aravis


class AravisCamera(ThreadedDriver):
    def __init__(self, name: str, spec: CameraSpec) -> None:
        super().__init__(name, spec)  # its _lock: software triggers vs the thread reopening
        self._thread: threading.Thread | None = None
        self._cam = None
        self._stream = None

    # --- the driver interface ---------------------------------------------------------
    def open(self) -> None:
        aravis()  # fail at open with a clear message, not in the thread
        self._thread = threading.Thread(target=self._acquire, name=f"gige-{self.name}", daemon=True)
        self._thread.start()

    def request(self, tag: str) -> None:
        super().request(tag)
        if self.spec.trigger == "software":
            with self._lock:
                cam = self._cam
                if cam is not None:
                    try:
                        cam.software_trigger()
                    except Exception as exc:  # noqa: BLE001 - the thread notices and reopens
                        self._health.last_error = repr(exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    # --- acquisition thread -----------------------------------------------------------
    def _acquire(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._connect()
                backoff = 0.2
                self._stream_until_lost()
            except Exception as exc:  # noqa: BLE001 - camera gone, bad settings: retry
                self._health.last_error = repr(exc)
                if self._health.connected:
                    log.warning("camera %s lost: %r; reconnecting", self.name, exc)
                else:
                    log.info("camera %s not reachable: %r; retrying", self.name, exc)
            self._disconnect()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)
        self._disconnect()

    def _connect(self) -> None:
        Aravis = aravis()  # noqa: N806 - the library's name
        if self.spec.device.startswith("Fake_"):
            Aravis.enable_interface("Fake")  # Aravis' in-process simulated camera
        s = self.spec
        cam = Aravis.Camera.new(s.device or None)
        cam.set_pixel_format_from_string(s.pixel_format)
        if s.region is not None:
            cam.set_region(*s.region)
        if s.exposure_us is not None:
            cam.set_exposure_time(s.exposure_us)
        if s.gain_db is not None:
            cam.set_gain(s.gain_db)
        if s.packet_size and cam.is_gv_device():
            cam.gv_set_packet_size(s.packet_size)
        cam.set_frame_rate(s.fps)  # before the trigger: setting the rate switches it off
        if s.trigger == "software":
            cam.set_trigger("Software")
        elif s.trigger == "hardware":
            cam.set_trigger(s.trigger_source)
        stream = cam.create_stream(None, None)
        payload = cam.get_payload()
        for _ in range(N_BUFFERS):
            stream.push_buffer(Aravis.Buffer.new_allocate(payload))
        cam.start_acquisition()
        with self._lock:
            self._cam, self._stream = cam, stream
        if self._down_since is not None:
            self._health.reconnects += 1
        self._health.connected = True
        log.info(
            "camera %s open: %s %s %s, %s trigger",
            self.name,
            cam.get_model_name(),
            cam.get_device_serial_number(),
            s.pixel_format,
            s.trigger,
        )

    def _stream_until_lost(self) -> None:
        Aravis = aravis()  # noqa: N806
        silent_since = time.monotonic()
        while not self._stop.is_set():
            buf = self._stream.timeout_pop_buffer(100_000)  # µs: the thread stays responsive
            now = time.monotonic()
            if buf is None:
                # frames are due (free-run, or requests waiting) and none come: camera gone
                due = self.spec.trigger == "free-run" or self._pending.waiting()
                if due and now - silent_since > max(2.0, 3.0 / self.spec.fps):
                    raise TimeoutError(f"no buffer for {now - silent_since:.1f} s")
                if not due:
                    silent_since = now
                continue
            silent_since = now
            try:
                if buf.get_status() == Aravis.BufferStatus.SUCCESS:
                    self._deliver(buf)
                else:
                    self._health.incomplete += 1
                    if self.spec.trigger == "software" and self._pending.waiting():
                        self._cam.software_trigger()  # the part is still there: expose again
            finally:
                self._stream.push_buffer(buf)

    def _deliver(self, buf) -> None:  # type: ignore[no-untyped-def]
        now_ns = time.time_ns()
        if self._down_since is not None:
            self._health.gap_s += time.monotonic() - self._down_since
            self._down_since = None
        image = to_image(
            buf.get_data(), buf.get_image_width(), buf.get_image_height(), self.spec.pixel_format
        )
        meta = {
            "camera_timestamp_ns": buf.get_timestamp(),  # the camera's clock (PTP when enabled)
            "camera_frame_id": buf.get_frame_id(),
            "pixel_format": self.spec.pixel_format,
        }
        self._health.frames += 1
        self._pending.fill(Grab(image, now_ns, meta))

    def _disconnect(self) -> None:
        with self._lock:
            cam, self._cam, self._stream = self._cam, None, None
        if self._health.connected and self._down_since is None:
            self._down_since = time.monotonic()
        self._health.connected = False
        if cam is not None:
            with contextlib.suppress(Exception):  # the camera may already be gone
                cam.stop_acquisition()
