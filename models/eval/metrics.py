"""Accuracy metrics for inspection, by their published definitions.

- image / pixel AUROC: area under the ROC curve (scikit-learn).
- AUPRO: MVTec AD's per-region overlap curve (Bergmann et al. 2021, IJCV, "The MVTec
  Anomaly Detection Dataset"): for each threshold, PRO = mean over ground-truth regions of
  the fraction of the region's pixels above it, against the false-positive rate on
  defect-free pixels; integrated up to FPR 0.3 and divided by 0.3.
- box AP@0.5: PASCAL VOC all-point interpolated average precision (Everingham et al.
  2010), a prediction matching the highest-IoU unmatched ground truth with IoU >= 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

Box = Sequence[float]


def image_auroc(defective: Sequence[bool], scores: Sequence[float]) -> float:
    return float(roc_auc_score(np.asarray(defective, bool), np.asarray(scores, np.float64)))


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], step: int = 2) -> float:
    """Every `step`-th pixel in each direction (step 2 keeps a quarter, to bound memory)."""
    y = np.concatenate([m[::step, ::step].ravel() for m in masks]).astype(bool)
    s = np.concatenate([a[::step, ::step].ravel() for a in maps]).astype(np.float32)
    return float(roc_auc_score(y, s))


def aupro(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to `fpr_limit` (exact, one sort of all pixels)."""
    scores, pos_w, neg = [], [], []
    n_regions = 0
    for mask, amap in zip(masks, maps, strict=True):
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
        sizes = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
        w = np.zeros(n)
        w[1:] = 1.0 / np.maximum(sizes[1:], 1)
        pos_w.append(w[labels.ravel()])
        neg.append(labels.ravel() == 0)
        scores.append(amap.ravel().astype(np.float32))
        n_regions += n - 1
    if n_regions == 0:
        raise ValueError("AUPRO needs at least one ground-truth defect region")
    s = np.concatenate(scores)
    order = np.argsort(-s, kind="stable")
    s = s[order]
    pro = np.cumsum(np.concatenate(pos_w)[order]) / n_regions
    is_neg = np.concatenate(neg)[order]
    fpr = np.cumsum(is_neg) / max(1, int(is_neg.sum()))
    # one point per distinct threshold: the last index of each run of equal scores
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    fpr, pro = np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]
    keep = fpr <= fpr_limit
    f, p = fpr[keep], pro[keep]
    if f[-1] < fpr_limit:  # interpolate the curve at the limit
        i = np.searchsorted(fpr, fpr_limit)
        if i < len(fpr):
            t = (fpr_limit - fpr[i - 1]) / max(fpr[i] - fpr[i - 1], 1e-12)
            f = np.r_[f, fpr_limit]
            p = np.r_[p, pro[i - 1] + t * (pro[i] - pro[i - 1])]
    area = float(np.sum((f[1:] - f[:-1]) * (p[1:] + p[:-1]) / 2.0))  # trapezoid rule
    return area / fpr_limit


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Detection:
    image: str
    score: float
    box: tuple[float, float, float, float]
    cls: str = ""


def average_precision(
    detections: Sequence[Detection],
    truths: dict[str, Sequence[Box]],
    iou_min: float = 0.5,
) -> float:
    """VOC all-point AP; `truths` maps every evaluated image (also those without defects)
    to its ground-truth boxes."""
    n_true = sum(len(b) for b in truths.values())
    if n_true == 0:
        raise ValueError("AP needs at least one ground-truth box")
    used = {img: np.zeros(len(b), bool) for img, b in truths.items()}
    tp = []
    for det in sorted(detections, key=lambda d: -d.score):
        gts = truths.get(det.image, ())
        best, best_i = 0.0, -1
        for i, g in enumerate(gts):
            if not used[det.image][i]:
                o = iou(det.box, g)
                if o > best:
                    best, best_i = o, i
        hit = best >= iou_min
        if hit:
            used[det.image][best_i] = True
        tp.append(hit)
    if not tp:
        return 0.0
    tps = np.cumsum(tp)
    precision = tps / np.arange(1, len(tp) + 1)
    recall = tps / n_true
    # all-point interpolation: precision envelope, summed over recall steps
    mrec = np.r_[0.0, recall, 1.0]
    mpre = np.r_[0.0, precision, 0.0]
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def mean_ap(
    detections: Sequence[Detection],
    truths: dict[str, Sequence[tuple[Box, str]]],
    iou_min: float = 0.5,
) -> tuple[float, dict[str, float]]:
    """Per-class AP (classes with ground truth) and their mean."""
    classes = sorted({c for boxes in truths.values() for _, c in boxes})
    per = {}
    for c in classes:
        t = {img: [b for b, bc in boxes if bc == c] for img, boxes in truths.items()}
        per[c] = average_precision([d for d in detections if d.cls == c], t, iou_min)
    return (float(np.mean(list(per.values()))) if per else 0.0), per
