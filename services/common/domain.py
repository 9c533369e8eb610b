"""Domain types shared by the stages; protobuf stays at the adapter edges."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rect:
    """An axis-aligned rectangle in frame pixels (x, y = top-left)."""

    x: int
    y: int
    width: int
    height: int

    @property
    def x1(self) -> int:
        return self.x + self.width

    @property
    def y1(self) -> int:
        return self.y + self.height


@dataclass(frozen=True)
class TileRect(Rect):
    index: int = 0


class Verdict(enum.IntEnum):
    # values equal defectflow.v1.Verdict
    OK = 1
    NG = 2
    REVIEW = 3


@dataclass(frozen=True)
class DefectRecord:
    defect_class: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in frame pixels
    area_px: float
    area_mm2: float
    contour: tuple[tuple[float, float], ...] = ()
    source: str = "anomaly"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    score: float
    defects: tuple[DefectRecord, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)
