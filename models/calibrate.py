"""`defectflow calibrate`: thresholds from the parts a factory has, written into the recipe.

Image scores and anomaly maps come from the same offline path as `defectflow inspect`
(so calibration sees exactly the preprocessing the line applies); the image threshold
comes from a method in services/common/thresholds.py, the pixel threshold from the good
maps ("no good part shows a region as large as the smallest defect").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.common import thresholds as th
from services.common.recipes import Recipe, Thresholds
from services.offline.inspect import Inspector

log = logging.getLogger("defectflow.calibrate")


@dataclass(frozen=True)
class Calibration:
    recipe: Recipe  # with the new thresholds and version + 1
    choice: th.Choice
    good_scores: np.ndarray
    defect_scores: np.ndarray

    @property
    def expected_escape_rate(self) -> float | None:
        if self.defect_scores.size == 0:
            return None
        return float((self.defect_scores < self.recipe.thresholds.image).mean())


def scores_and_maps(inspector: Inspector, images: list[np.ndarray], progress=None):
    results = []
    for n, img in enumerate(images, 1):
        results.append(inspector.inspect(img))
        if progress:
            progress(n, len(images))
    return np.array([r.decision.score for r in results]), [r.anomaly_map for r in results]


def calibrate(
    inspector: Inspector,
    good: list[np.ndarray],
    defects: list[np.ndarray],
    method: th.MaxNormal | th.Quantile | th.KSigma | th.TargetFalseReject | th.F1Optimal,
    review_margin: float = 0.05,
    bump_version: bool = True,
    progress=None,
) -> Calibration:
    recipe = inspector.recipe
    total = len(good) + len(defects)

    def step(offset: int):
        return (lambda n, _: progress(offset + n, total)) if progress else None

    good_scores, good_maps = scores_and_maps(inspector, good, step(0))
    defect_scores = (
        scores_and_maps(inspector, defects, step(len(good)))[0] if defects else np.array([])
    )
    choice = method.choose(good_scores, defect_scores)
    pixel = th.pixel_threshold_for_area(good_maps, recipe.thresholds.min_defect_area_px)
    new = Thresholds(
        pixel=float(min(pixel, choice.threshold)),
        image=choice.threshold,
        review_low=choice.threshold * (1.0 - review_margin),
        min_defect_area_px=recipe.thresholds.min_defect_area_px,
        min_defect_area_mm2=recipe.thresholds.min_defect_area_mm2,
        method=choice.method,
        frr_bound=choice.frr_bound,
        confidence=choice.confidence,
    )
    version = recipe.version + 1 if bump_version else recipe.version
    updated = recipe.model_copy(update={"thresholds": new, "version": version})
    return Calibration(updated, choice, good_scores, defect_scores)


def histogram_png(cal: Calibration, path: Path, width: int = 640, height: int = 320) -> Path:
    """Score histogram of good (green) and defective (red) parts with the threshold (blue)
    and the review band (grey), drawn with OpenCV."""
    g, d, t = cal.good_scores, cal.defect_scores, cal.recipe.thresholds
    hi = float(max(g.max(), d.max() if d.size else 0.0, t.image) * 1.05)
    lo = float(min(g.min(), d.min() if d.size else g.min()) * 0.95)
    bins = np.linspace(lo, hi, 41)
    img = np.full((height, width, 3), 255, np.uint8)
    margin = 30
    scale_x = (width - 2 * margin) / (hi - lo)
    hg = np.histogram(g, bins)[0]
    hd = np.histogram(d, bins)[0] if d.size else np.zeros(40, int)
    peak = max(hg.max(), hd.max(), 1)

    def x(v: float) -> int:
        return int(margin + (v - lo) * scale_x)

    cv2.rectangle(
        img, (x(t.review_low), margin), (x(t.image), height - margin), (225, 225, 225), -1
    )
    for counts, colour, shift in ((hg, (60, 160, 60), 0), (hd, (50, 50, 200), 3)):
        for i, c in enumerate(counts):
            if c:
                top = int(height - margin - (height - 2 * margin) * c / peak)
                cv2.rectangle(
                    img,
                    (x(bins[i]) + shift, top),
                    (x(bins[i + 1]) - 1, height - margin),
                    colour,
                    -1,
                )
    cv2.line(img, (x(t.image), margin - 10), (x(t.image), height - margin), (200, 80, 0), 2)
    cv2.line(img, (margin, height - margin), (width - margin, height - margin), (0, 0, 0), 1)
    for v in np.linspace(lo, hi, 6):
        cv2.putText(
            img, f"{v:.1f}", (x(v) - 12, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1
        )
    cv2.putText(
        img,
        f"threshold {t.image:.2f}  good n={g.size}  defective n={d.size}",
        (margin, 18),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (0, 0, 0),
        1,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def report_md(cal: Calibration, png: Path) -> str:
    t, c = cal.recipe.thresholds, cal.choice
    lines = [
        f"# Calibration of recipe {cal.recipe.id} v{cal.recipe.version}",
        "",
        f"- method: {t.method}",
        f"- image threshold: {t.image:.4f}; review band [{t.review_low:.4f}, {t.image:.4f})",
        f"- pixel threshold: {t.pixel:.4f} (no good part has a region of "
        f"{t.min_defect_area_px} px above it)",
        f"- good parts: {cal.good_scores.size}, scores {cal.good_scores.min():.3f} .. "
        f"{cal.good_scores.max():.3f}; rejected at this threshold: "
        f"{int((cal.good_scores >= t.image).sum())}",
    ]
    if c.frr_bound is not None:
        lines.append(
            f"- expected false-reject rate on new good parts: <= {c.frr_bound:.2%} "
            f"at {c.confidence:.0%} confidence (order-statistic bound)"
        )
    if c.note:
        lines.append(f"- note: {c.note}")
    if cal.defect_scores.size:
        lines.append(
            f"- defective parts: {cal.defect_scores.size}; escape rate at this threshold: "
            f"{cal.expected_escape_rate:.2%}"
        )
    lines += ["", f"![score histogram]({png.name})", ""]
    return "\n".join(lines)


def record_drift_reference(cal: Calibration, recipes_dir: Path) -> Path | None:
    """The good parts' scores beside the recipe (`<id>.scores.json`): postprocess compares
    each line's live scores with them (score drift). Too few parts: no reference, said."""
    from services.common import drift

    try:
        return drift.save_reference(
            recipes_dir, cal.recipe.id, cal.recipe.version, cal.good_scores, cal.choice.method
        )
    except ValueError as exc:
        log.warning("no drift reference: %s", exc)
        return None
