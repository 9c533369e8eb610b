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
    """A frame's or a part's verdict; the values equal defectflow.v1.Verdict (NONE: no
    verdict yet, the PLC's Verdict node before a part is decided)."""

    NONE = 0
    OK = 1
    NG = 2
    REVIEW = 3


# The one table of how a verdict is shown: on pages and charts (hex on white) and drawn
# on images (OpenCV BGR, bright on any part)
VERDICT_HEX = {
    Verdict.NONE: "#808080",
    Verdict.OK: "#1f7a3a",
    Verdict.NG: "#b3261e",
    Verdict.REVIEW: "#c08400",
}
VERDICT_BGR = {
    Verdict.NONE: (128, 128, 128),
    Verdict.OK: (0, 200, 0),
    Verdict.NG: (0, 0, 255),
    Verdict.REVIEW: (0, 190, 255),
}


def verdict_name(code: int) -> str:
    """ "OK", "NG", "REVIEW" ("NONE" for 0); "?" for a code no verdict has."""
    try:
        return Verdict(int(code)).name
    except ValueError:
        return "?"


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
