"""Camera sources: a synthetic camera of generated parts, an image folder, a video file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from services.common.synthetic import render_part


@dataclass(frozen=True)
class Capture:
    image: np.ndarray
    truth: dict | None = None  # ground truth of a synthetic part (kept for tests)


class Source(Protocol):
    """A camera that reads a frame when asked (synthetic parts, a folder, a video)."""

    line: str
    station: str
    name: str

    def read(self) -> Capture | None: ...  # None: source exhausted


class SyntheticCamera:
    def __init__(
        self,
        line: str,
        station: str,
        name: str,
        family: str,
        seed: int,
        defect_rate: float,
        defect_types: list[str],
        size: tuple[int, int],
        gain: float = 1.0,
        gain_after: int = 0,
        defocus: float = 0.0,
        pool: int = 0,
    ) -> None:
        self.line, self.station, self.name = line, station, name
        self.family, self.size = family, size
        self.defect_types = defect_types
        self.defect_rate = defect_rate
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        # the lamp and lens change after `gain_after` parts: every later image is scaled by
        # `gain` and blurred by `defocus` px (the drift the score-drift monitor must see)
        self.gain, self.gain_after, self.defocus = gain, gain_after, defocus
        self.parts = 0
        # pool > 0: render that many parts, then show them again in turn; rendering costs a
        # real camera nothing on the host, so a benchmark's cameras should not pay for it
        self.pool = pool
        self._pooled: list[tuple[np.ndarray, dict]] = []

    def _draw(self) -> tuple[int, str | None]:
        self.parts += 1
        part_seed = int(self.rng.integers(0, 2**31))
        defect = None
        if self.rng.random() < self.defect_rate:
            defect = self.defect_types[int(self.rng.integers(0, len(self.defect_types)))]
        return part_seed, defect

    def skip(self, n: int) -> None:
        """Move past n parts without rendering them (ingest resuming after a restart)."""
        for _ in range(n):
            self._draw()

    def read(self) -> Capture:
        if self.pool and len(self._pooled) >= self.pool:
            self.parts += 1
            image, truth = self._pooled[(self.parts - 1) % self.pool]
        else:
            part_seed, defect = self._draw()
            image, gt = render_part(self.family, part_seed, self.size, defect, "obvious")
            truth = {
                "family": self.family,
                "seed": part_seed,
                "defect_type": defect,
                "severity": gt.severity,
                "box": gt.box,
            }
            if self.pool:
                self._pooled.append((image, truth))
        if self.parts > self.gain_after:
            if self.gain != 1.0:
                image = np.clip(image.astype(np.float32) * self.gain, 0, 255).astype(np.uint8)
            if self.defocus > 0:
                image = cv2.GaussianBlur(image, (0, 0), self.defocus)
        return Capture(image, dict(truth))


class FolderCamera:
    EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}

    def __init__(self, line: str, station: str, name: str, folder: Path) -> None:
        self.line, self.station, self.name = line, station, name
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in self.EXTENSIONS)
        if not files:
            raise FileNotFoundError(
                f"no images ({', '.join(sorted(self.EXTENSIONS))}) under {folder}"
            )
        self._files: Iterator[Path] = iter(files)

    def read(self) -> Capture | None:
        for path in self._files:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return Capture(image, {"path": str(path)})
        return None


class VideoCamera:
    def __init__(self, line: str, station: str, name: str, path: Path) -> None:
        self.line, self.station, self.name = line, station, name
        self.cap = cv2.VideoCapture(str(path))
        if not self.cap.isOpened():
            raise FileNotFoundError(f"OpenCV cannot open video {path}")

    def read(self) -> Capture | None:
        ok, image = self.cap.read()
        return Capture(image) if ok else None


class GroundTruthLog:
    """Appends one JSON line per accepted frame (frame id, camera, the part's truth).

    It is also ingest's record of what was accepted: on restart ingest reads it to
    skip spooled frames that were already accepted and to resume each camera's count.
    A line torn by a crash (kill -9 mid-write) is cut off when the log is reopened.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path else None
        self.file = None
        if self.path:
            self._cut_torn_tail(self.path)
            self.file = open(self.path, "a")  # noqa: SIM115

    @staticmethod
    def _cut_torn_tail(path: Path) -> None:
        if not path.exists():
            return
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(path, "r+b") as f:
                f.truncate(keep)

    def entries(self) -> list[dict]:
        if not self.path or not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]

    def write(self, frame_id: str, line: str, camera: str, truth: dict | None) -> None:
        if self.file:
            self.file.write(
                json.dumps(
                    {
                        "frame_id": frame_id,
                        "line": line,
                        "camera": camera,
                        **(truth or {}),
                    }
                )
                + "\n"
            )

    def flush(self) -> None:
        if self.file:
            self.file.flush()
