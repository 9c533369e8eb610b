"""Thresholds as their own classes, outside the model graph (Luo et al. 2022, "A survey of
threshold selection for anomaly detection": maximum of normal scores, p-quantile,
k-sigma, F1-optimal; anomalib #2433/#3357 for why F1-optimal fails without defects).

Every method takes the image scores of good parts (and, where it can use them, of
defective parts) and returns a `Choice`: the threshold and what it is expected to do.
`TargetFalseReject` is the one for a factory that has only good parts: it picks the
threshold from the order statistics of the good scores so that, with the stated
confidence, the false-reject rate on future good parts stays at or below the target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.stats import beta


@dataclass(frozen=True)
class Choice:
    threshold: float
    method: str
    # upper bound of the false-reject rate on future good parts, at `confidence` (None when
    # the method gives no distribution-free bound)
    frr_bound: float | None = None
    confidence: float | None = None
    note: str = ""


def _scores(good: Sequence[float]) -> np.ndarray:
    s = np.asarray(good, np.float64)
    if s.size == 0 or not np.isfinite(s).all():
        raise ValueError("calibration needs at least one finite good score")
    return np.sort(s)


def frr_bound(n: int, exceed: int, confidence: float) -> float:
    """Upper confidence bound of P(good score > t) when t is the (exceed+1)-th largest of n
    good scores: the coverage F(t) of that order statistic is Beta(n - exceed, exceed + 1)
    distributed for any continuous score distribution, so with probability `confidence`
    the false-reject rate is below the returned value."""
    return float(1.0 - beta.ppf(1.0 - confidence, n - exceed, exceed + 1))


@dataclass(frozen=True)
class MaxNormal:
    """Highest good score x margin."""

    margin: float = 1.05

    def choose(self, good: Sequence[float], defects: Sequence[float] = ()) -> Choice:
        s = _scores(good)
        return Choice(
            float(s[-1] * self.margin),
            f"max of {s.size} good scores x {self.margin}",
            frr_bound(s.size, 0, 0.95),
            0.95,
        )


@dataclass(frozen=True)
class Quantile:
    p: float = 0.99

    def choose(self, good: Sequence[float], defects: Sequence[float] = ()) -> Choice:
        s = _scores(good)
        return Choice(float(np.quantile(s, self.p)), f"{self.p:g}-quantile of {s.size} good scores")


@dataclass(frozen=True)
class KSigma:
    """mean + k standard deviations (assumes roughly normal scores; no bound given)."""

    k: float = 3.0

    def choose(self, good: Sequence[float], defects: Sequence[float] = ()) -> Choice:
        s = _scores(good)
        sd = float(s.std(ddof=1)) if s.size > 1 else 0.0
        return Choice(
            float(s.mean() + self.k * sd), f"mean + {self.k:g} sigma of {s.size} good scores"
        )


@dataclass(frozen=True)
class TargetFalseReject:
    """The lowest good-score order statistic whose false-reject rate is <= `target` with
    probability `confidence`. With too few good parts no order statistic qualifies: the
    maximum is used and the bound it does give is reported, with how many parts would
    be needed (n >= log(1 - confidence) / log(1 - target))."""

    target: float = 0.01
    confidence: float = 0.95

    def needed(self) -> int:
        return math.ceil(math.log(1 - self.confidence) / math.log(1 - self.target))

    def choose(self, good: Sequence[float], defects: Sequence[float] = ()) -> Choice:
        s = _scores(good)
        n = s.size
        exceed = -1
        for m in range(n):  # m good scores lie above the threshold
            if frr_bound(n, m, self.confidence) <= self.target:
                exceed = m
            else:
                break
        if exceed < 0:
            return Choice(
                float(s[-1]),
                f"max of {n} good scores (too few for FRR <= {self.target:g})",
                frr_bound(n, 0, self.confidence),
                self.confidence,
                f"{self.needed()} good parts are needed to guarantee FRR <= {self.target:g} "
                f"at {self.confidence:.0%} confidence",
            )
        # threshold just above the (exceed+1)-th largest score: that many parts exceed it
        t = float(np.nextafter(s[n - 1 - exceed], np.inf))
        return Choice(
            t,
            f"target FRR {self.target:g} at {self.confidence:.0%} from {n} good scores",
            frr_bound(n, exceed, self.confidence),
            self.confidence,
        )


@dataclass(frozen=True)
class F1Optimal:
    """The threshold maximising F1 on labelled good and defective scores; only with
    defects (on good-only data F1 is undefined and the method refuses)."""

    def choose(self, good: Sequence[float], defects: Sequence[float] = ()) -> Choice:
        g = _scores(good)
        d = np.asarray(defects, np.float64)
        if d.size == 0:
            raise ValueError("F1-optimal thresholds need labelled defective parts")
        best, best_t = -1.0, float(g[-1])
        for t in np.unique(np.concatenate([g, d])):
            tp = float((d >= t).sum())
            fp = float((g >= t).sum())
            fn = d.size - tp
            f1 = 2 * tp / max(2 * tp + fp + fn, 1)
            if f1 > best:
                best, best_t = f1, float(t)
        return Choice(best_t, f"F1-optimal (F1 {best:.3f}) on {g.size} good, {d.size} defective")


METHODS = {
    "max_normal": MaxNormal,
    "quantile": Quantile,
    "k_sigma": KSigma,
    "target_frr": TargetFalseReject,
    "f1": F1Optimal,
}


def method_named(
    name: str,
    target_frr: float = 0.01,
    confidence: float = 0.95,
    quantile: float = 0.99,
    k: float = 3.0,
) -> MaxNormal | Quantile | KSigma | TargetFalseReject | F1Optimal:
    """The threshold rule called `name`, with the parameter it takes; ValueError names the
    rules there are."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    args: dict[str, tuple[float, ...]] = {
        "target_frr": (target_frr, confidence),
        "quantile": (quantile,),
        "k_sigma": (k,),
    }
    return METHODS[name](*args.get(name, ()))


# a region is what lies at or above the pixel threshold, with gaps narrower than this many
# pixels closed: the map is smooth at the features' 8 px stride, so a dip inside one defect
# (a scratch crossing a brighter patch) must not split it into two records
REGION_GAP_PX = 9
_CLOSE = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (REGION_GAP_PX, REGION_GAP_PX))


def regions(amap: np.ndarray, threshold: float) -> tuple[int, np.ndarray, np.ndarray]:
    """(count + 1, labels, stats) of the map's regions at `threshold`, as OpenCV's
    connectedComponentsWithStats gives them; the same regions for calibration (here) and
    for the defect records (services/postprocess/logic.find_defects)."""
    mask = cv2.morphologyEx((amap >= threshold).astype(np.uint8), cv2.MORPH_CLOSE, _CLOSE)
    return cv2.connectedComponentsWithStats(mask, connectivity=8)[:3]


def pixel_threshold_for_area(good_maps: Sequence[np.ndarray], min_area_px: int) -> float:
    """The lowest pixel threshold at which no good map has a region (`regions`) of at least
    `min_area_px` pixels ("maximum defect area" on normal data): every region the
    threshold finds on a good part is smaller than a defect may be."""
    worst = 0.0
    for amap in good_maps:
        # bisection on this map: the lowest threshold with every region < min_area_px
        lo, hi = float(amap.min()), float(amap.max())
        for _ in range(30):
            mid = (lo + hi) / 2
            n, _, stats = regions(amap, mid)
            biggest = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
            if biggest >= min_area_px:
                lo = mid
            else:
                hi = mid
        worst = max(worst, hi)
    return worst
