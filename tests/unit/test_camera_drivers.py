"""Camera driver pieces that need no camera: pixel formats, the cameras file, runtime changes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from services.ingest.adapters.driver import SourceDriver, parse_cameras
from services.ingest.adapters.fleet import CameraFleet
from services.ingest.adapters.pixels import to_image


def test_pixel_formats():
    mono = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert (to_image(mono.tobytes(), 4, 3, "Mono8") == mono).all()
    m16 = np.full((3, 4), 0xABCD, "<u2")
    assert (to_image(m16.tobytes(), 4, 3, "Mono16") == 0xAB).all()
    assert (to_image(np.full((3, 4), 0x0ABC, "<u2").tobytes(), 4, 3, "Mono16", 12) == 0xAB).all()
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200  # red
    assert to_image(rgb.tobytes(), 2, 2, "RGB8")[0, 0].tolist() == [0, 0, 200]  # BGR
    # an all-red RGGB mosaic demosaics to red
    bayer = np.zeros((4, 4), np.uint8)
    bayer[0::2, 0::2] = 200
    out = to_image(bayer.tobytes(), 4, 4, "BayerRG8")
    assert out[1, 1, 2] > 100 and out[1, 1, 0] < 50
    with pytest.raises(ValueError, match="needs 12 bytes"):
        to_image(b"\x00" * 5, 4, 3, "Mono8")
    with pytest.raises(ValueError, match="not supported"):
        to_image(b"", 1, 1, "YUV422")


def test_cameras_file_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="driver"):
        parse_cameras("cameras: {c1: {driver: firewire, line: l, station: s}}")
    with pytest.raises(ValueError, match="fps"):
        parse_cameras("cameras: {c1: {driver: rtsp, line: l, station: s, fps: 0}}")


class _Fake:
    line = station = name = "x"

    def read(self):
        return None


def _write(path, text):
    # a new mtime each time: the fleet re-reads on mtime, coarser than a fast test
    n = path.stat().st_mtime_ns + 10**9 if path.exists() else 10**18
    path.write_text(text)
    os.utime(path, ns=(n, n))


def test_fleet_adds_removes_and_reopens_cameras_at_runtime(tmp_path):
    opened, closed = [], []

    class Tracked(SourceDriver):
        def open(self):
            opened.append(self.name)

        def close(self):
            closed.append(self.name)

    path = tmp_path / "cameras.yaml"
    fleet = CameraFleet(path, lambda n, s: Tracked(n, s, _Fake()))
    assert not fleet.refresh()  # no file yet: nothing, no crash
    _write(
        path,
        "cameras:\n  a: {driver: synthetic, line: l1, station: s1}\n"
        "  b: {driver: synthetic, line: l1, station: s1}\n",
    )
    assert fleet.refresh() and sorted(opened) == ["a", "b"]
    _write(
        path,
        "cameras:\n  a: {driver: synthetic, line: l1, station: s1}\n"
        "  c: {driver: synthetic, line: l2, station: s2, fps: 5}\n",
    )
    assert fleet.refresh()
    assert closed == ["b"] and opened[-1] == "c" and sorted(fleet.drivers) == ["a", "c"]
    _write(path, "cameras: [broken")  # a broken file keeps the last good fleet
    assert not fleet.refresh() and sorted(fleet.drivers) == ["a", "c"]
