"""Score drift: the live image scores of a line and recipe against the calibration scores.

A model's silent failure on a line is drift (lighting, material, camera): the score
distribution of good parts moves until false rejects explode or defects slip through.
`defectflow calibrate` records the good parts' scores beside the recipe
(`<recipes_dir>/<recipe id>.scores.json`); postprocess keeps the last `window` scores of
parts below the NG threshold per (line, recipe) and exports two statistics against that
reference:

- the two-sample Kolmogorov-Smirnov statistic D (max distance of the two empirical CDFs,
  0..1, needs no binning); the alert fires when D stays above `KS_ALERT` = 0.4 for 30 s on
  a window of at least `ALERT_MIN_WINDOW` scores. Without drift D stays below the
  critical value 1.95 * sqrt((n + m) / (n m)) with probability 0.999: 0.37 for 60
  reference and 50 live scores, 0.40 for 40 live scores; 30 s above it needs two nearly
  independent windows above it. Measured here: steady full windows 0.10-0.24; the lamp at
  60 % (good parts' scores up by ~1.3, still below the NG threshold) 0.59-0.63;
- the population stability index over quantile bins of the reference (0.1 / 0.25 are
  the usual "watch" / "act" marks), shown on the dashboard.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.common import metrics

KS_ALERT = 0.4  # the alert rule in monitoring/rules/defectflow.rules.yml uses the same values
ALERT_MIN_WINDOW = 40  # on fewer scores D passes 0.4 by chance too often
DEFAULT_WINDOW = 50
PSI_BINS = 5
MIN_REFERENCE = 20
SCHEMA = 1
log = logging.getLogger("defectflow.drift")


def reference_path(recipes_dir: Path, recipe_id: str) -> Path:
    return Path(recipes_dir) / f"{recipe_id}.scores.json"


def save_reference(
    recipes_dir: Path, recipe_id: str, recipe_version: int, good_scores, method: str = ""
) -> Path:
    """Record the calibration distribution (image scores of good parts) beside the recipe.
    `defectflow calibrate` and `defectflow fit` call this with the scores they chose the
    thresholds from."""
    scores = [float(s) for s in np.asarray(good_scores, dtype=float).ravel() if np.isfinite(s)]
    if len(scores) < MIN_REFERENCE:
        raise ValueError(
            f"drift reference for recipe {recipe_id!r} needs at least {MIN_REFERENCE} good "
            f"scores, got {len(scores)}: calibrate on more good parts"
        )
    path = reference_path(recipes_dir, recipe_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema": SCHEMA,
        "recipe_id": recipe_id,
        "recipe_version": recipe_version,
        "method": method,
        "good_scores": sorted(scores),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)  # readers never see half a file
    return path


@dataclass(frozen=True)
class Reference:
    recipe_id: str
    recipe_version: int
    scores: np.ndarray  # sorted

    @classmethod
    def load(cls, path: Path) -> Reference:
        try:
            doc = json.loads(Path(path).read_text())
            scores = np.sort(np.asarray(doc["good_scores"], dtype=float))
            return cls(doc["recipe_id"], int(doc["recipe_version"]), scores)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read drift reference {path}: {exc}") from exc


def ks_statistic(reference: np.ndarray, live: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov D = sup |F_ref(x) - F_live(x)| (scipy.stats.ks_2samp)."""
    from scipy.stats import ks_2samp

    if len(reference) == 0 or len(live) == 0:
        return 0.0
    return float(ks_2samp(reference, live).statistic)


def psi(reference: np.ndarray, live: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index over `bins` quantile bins of the reference (outer bins
    open-ended); empty bins are smoothed with half a count so the log stays finite."""
    if len(reference) == 0 or len(live) == 0:
        return 0.0
    inner = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    ref_counts = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=bins)
    live_counts = np.bincount(np.searchsorted(inner, live, side="right"), minlength=bins)
    p = (ref_counts + 0.5) / (len(reference) + 0.5 * bins)
    q = (live_counts + 0.5) / (len(live) + 0.5 * bins)
    return float(np.sum((q - p) * np.log(q / p)))


@dataclass
class DriftMonitor:
    """Sliding windows of image scores per (line, recipe), compared with the reference
    recorded at calibration; exports the gauges in services/common/metrics.py."""

    recipes_dir: Path
    window: int = DEFAULT_WINDOW
    windows: dict[tuple[str, str], deque] = field(default_factory=dict)
    _refs: dict[str, tuple[float, Reference | None]] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # recipes without a reference (logged once)

    def reference(self, recipe_id: str) -> Reference | None:
        path = reference_path(self.recipes_dir, recipe_id)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            if recipe_id not in self.missing:
                log.warning(
                    "no calibration scores for recipe %s (%s): score drift is not monitored "
                    "until `defectflow calibrate` records them",
                    recipe_id,
                    path,
                )
            self.missing.add(recipe_id)
            self._refs.pop(recipe_id, None)
            return None
        cached = self._refs.get(recipe_id)
        if cached is None or cached[0] != mtime:  # recalibrated: compare with the new one
            try:
                ref = Reference.load(path)
            except ValueError:
                ref = None
            self._refs[recipe_id] = (mtime, ref)
            for key in [k for k in self.windows if k[1] == recipe_id]:
                self.windows[key].clear()  # scores of the old thresholds/model do not count
        self.missing.discard(recipe_id)
        return self._refs[recipe_id][1]

    def add(
        self, line: str, recipe_id: str, score: float, below: float = math.inf
    ) -> tuple[float, float] | None:
        """Add one image score; returns (ks, psi) now, or None when the score does not count
        or the recipe has no reference.

        Only scores below `below` (the recipe's NG threshold) count, on both sides: the
        reference holds good parts only, and the live stream also carries the defective
        parts the line rightly rejects, which are no drift. Good parts pushed into the
        REVIEW band still count (that is the drift to catch); pushed past the NG threshold
        they show as the rest moving up, and in the NG-rate alert."""
        if not math.isfinite(score) or score >= below:
            return None  # no tiles (no score), or a part the model flags
        ref = self.reference(recipe_id)
        if ref is None:
            return None
        reference = ref.scores[: np.searchsorted(ref.scores, below, side="left")]
        win = self.windows.setdefault((line, recipe_id), deque(maxlen=self.window))
        win.append(score)
        live = np.fromiter(win, dtype=float, count=len(win))
        ks, p = ks_statistic(reference, live), psi(reference, live)
        metrics.DRIFT_KS.labels(line, recipe_id).set(ks)
        metrics.DRIFT_PSI.labels(line, recipe_id).set(p)
        metrics.DRIFT_WINDOW.labels(line, recipe_id).set(len(win))
        return ks, p
