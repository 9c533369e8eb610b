"""`defectflow fit` chooses among a recipe's candidate settings for the user's parts.

A factory has good parts on day one and few or no defects, so each candidate is judged
on the user's held-out good parts and on copies of them with synthetic defects pasted
in: small blobs and thin lines, darker or brighter, of low to medium contrast, placed
inside the ROI (the pseudo-anomaly idea of CutPaste, Li et al. 2021, and DRAEM, Zavrtanik
et al. 2021, used here only to choose, never to train). Labelled defects the user gives
join them. The candidate whose scores separate defects from good parts best (image
AUROC) wins; within 0.005 of the best, the earlier (cheaper) one in the recipe's list.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from services.common.recipes import Recipe
from services.tiling.logic import recipe_roi

TIE = 0.005


def paste_defect(image: np.ndarray, recipe: Recipe, seed: int) -> np.ndarray:
    """A copy of a good image with one synthetic defect inside the ROI."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    roi = recipe_roi(recipe, w, h)
    mask = np.zeros((h, w), np.float32)
    margin = 24
    cx = int(rng.integers(roi.x + margin, max(roi.x + margin + 1, roi.x1 - margin)))
    cy = int(rng.integers(roi.y + margin, max(roi.y + margin + 1, roi.y1 - margin)))
    if rng.random() < 0.5:  # a blob: spot, stain, dent, contamination
        axes = (int(rng.integers(3, 16)), int(rng.integers(3, 16)))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        edge = float(rng.uniform(0.7, 2.0))
    else:  # a thin line: scratch, crack, snag
        length, ang = rng.uniform(20, 90), rng.uniform(0, np.pi)
        dx, dy = np.cos(ang) * length / 2, np.sin(ang) * length / 2
        p0, p1 = (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy))
        cv2.line(mask, p0, p1, 1.0, int(rng.integers(1, 4)))
        edge = 0.6  # a wider blur would fade a 1 px line to nothing
    mask = cv2.GaussianBlur(mask, (0, 0), edge)
    img = image.astype(np.float32)
    level = float(np.median(img[roi.y : roi.y1, roi.x : roi.x1]))
    delta = rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.4) * max(level, 40.0)
    out = img + delta * (mask[:, :, None] if img.ndim == 3 else mask)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def pseudo_defects(images: list[np.ndarray], recipe: Recipe, per_image: int = 2) -> list:
    return [
        paste_defect(img, recipe, 7919 * i + k)
        for i, img in enumerate(images)
        for k in range(per_image)
    ]


@dataclass(frozen=True)
class Trial:
    label: str
    recipe: Recipe
    auroc: float
    good_max: float
    seconds: float


def pick(trials: list[Trial]) -> Trial:
    best = max(t.auroc for t in trials)
    return next(t for t in trials if t.auroc >= best - TIE)


def separation(good_scores, defect_scores) -> float:
    y = np.r_[np.zeros(len(good_scores)), np.ones(len(defect_scores))]
    return float(roc_auc_score(y, np.r_[good_scores, defect_scores]))


def report(trials: list[Trial], chosen: Trial, n_good: int, n_defects: int) -> str:
    lines = [
        f"# How `defectflow fit` chose the settings of {chosen.recipe.id}",
        "",
        f"Each candidate was fitted on the same good parts and scored on {n_good} held-out "
        f"good parts and {n_defects} defective ones (synthetic defects pasted into held-out "
        "good parts, plus any labelled defects given). Chosen: the best image AUROC; within "
        f"{TIE} of it, the earlier candidate.",
        "",
        "| candidate | image AUROC | max good score | fit + score time |",
        "|---|---|---|---|",
    ]
    for t in trials:
        mark = " (chosen)" if t is chosen else ""
        lines.append(f"| {t.label}{mark} | {t.auroc:.3f} | {t.good_max:.2f} | {t.seconds:.0f} s |")
    return "\n".join(lines) + "\n"
