"""The operator's overlay: the frame with each defect's box, contour and label drawn on it.

Pure: pixels and defect records in, pixels out (OpenCV drawing only).
"""

from __future__ import annotations

import cv2
import numpy as np

from services.common.domain import VERDICT_BGR, DefectRecord, Verdict

# BGR
BOX_COLOUR = (0, 0, 255)
CONTOUR_COLOUR = (255, 0, 255)


def to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image.copy()


def draw_overlay(
    image: np.ndarray, defects: list[DefectRecord] | tuple[DefectRecord, ...], verdict: int
) -> np.ndarray:
    """A BGR copy of `image` with boxes, contours, labels and a verdict banner."""
    out = to_bgr(image)
    h, w = out.shape[:2]
    thick = max(1, round(min(h, w) / 300))
    scale = max(0.4, min(h, w) / 800)
    for d in defects:
        x0, y0, x1, y1 = (round(v) for v in d.box)
        x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1, w - 1))
        y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1, h - 1))
        cv2.rectangle(out, (x0, y0), (x1, y1), BOX_COLOUR, thick)
        if len(d.contour) >= 2:
            pts = np.round(np.asarray(d.contour, np.float32)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(out, [pts], True, CONTOUR_COLOUR, thick)
        label = f"{d.defect_class} {d.score:.2f}"
        ty = y0 - 4 if y0 > 14 * scale else min(h - 2, y1 + int(14 * scale))
        cv2.putText(out, label, (x0, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, BOX_COLOUR, thick)
    try:
        v = Verdict(verdict)
    except ValueError:
        v = Verdict.NONE
    colour, text = VERDICT_BGR[v], ("UNSPECIFIED" if v is Verdict.NONE else v.name)
    cv2.putText(out, text, (4, int(20 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick)
    return out
