"""Score drift statistics and the per-line monitor (no servers)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from prometheus_client import REGISTRY

from services.common import drift


def scores(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    return rng.normal(18.7 + shift, 0.5, n)


def test_ks_and_psi_small_for_the_same_distribution_large_for_a_shift():
    rng = np.random.default_rng(0)
    ref = scores(rng, 60)
    same = [drift.ks_statistic(ref, scores(rng, 50)) for _ in range(200)]
    shifted = [drift.ks_statistic(ref, scores(rng, 50, shift=1.5)) for _ in range(200)]
    # the alert threshold separates the two with room on both sides
    assert max(same) < drift.KS_ALERT - 0.05
    assert min(shifted) > drift.KS_ALERT + 0.2
    assert np.median([drift.psi(ref, scores(rng, 50)) for _ in range(50)]) < 0.25
    assert min(drift.psi(ref, scores(rng, 50, shift=1.5)) for _ in range(50)) > 1.0


def test_ks_matches_its_definition():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    live = np.array([3.5, 4.5])
    # F_ref(3) = 0.75, F_live(3) = 0: D = 0.75
    assert drift.ks_statistic(ref, live) == pytest.approx(0.75)
    assert drift.ks_statistic(ref, ref) == 0.0


def test_psi_of_identical_bins_is_zero_and_grows_with_moved_mass():
    ref = np.arange(100, dtype=float)
    assert drift.psi(ref, ref) == pytest.approx(0.0, abs=1e-12)
    little = drift.psi(ref, np.concatenate([ref[10:], np.full(10, 99.0)]))
    much = drift.psi(ref, np.full(100, 99.0))
    assert 0 < little < much


def test_reference_round_trip_and_refusal_of_too_few_scores(tmp_path):
    path = drift.save_reference(tmp_path, "brushed-metal", 3, [3.0, float("nan"), *range(25)])
    assert path == tmp_path / "brushed-metal.scores.json"
    ref = drift.Reference.load(path)
    assert (ref.recipe_id, ref.recipe_version, len(ref.scores)) == ("brushed-metal", 3, 26)
    assert list(ref.scores) == sorted(ref.scores)
    with pytest.raises(ValueError, match="at least 20 good scores"):
        drift.save_reference(tmp_path, "x", 1, [1.0] * 5)


def gauge(name: str, line: str, recipe: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"line": line, "recipe": recipe})


def test_monitor_per_line_window_crosses_the_threshold_after_a_shift(tmp_path):
    rng = np.random.default_rng(1)
    drift.save_reference(tmp_path, "r1", 1, scores(rng, 60))
    mon = drift.DriftMonitor(tmp_path, window=50)
    for s in scores(rng, 80):
        mon.add("line-a", "r1", float(s))
        mon.add("line-b", "r1", float(s))
    assert gauge("defectflow_score_drift_ks", "line-a", "r1") < drift.KS_ALERT
    assert gauge("defectflow_score_drift_window_scores", "line-a", "r1") == 50
    crossed_after = None
    for i, s in enumerate(scores(rng, 50, shift=1.5)):
        ks, _ = mon.add("line-a", "r1", float(s))
        mon.add("line-b", "r1", float(scores(rng, 1)[0]))
        if crossed_after is None and ks > drift.KS_ALERT:
            crossed_after = i + 1
    # more than half the window must have moved before KS passes 0.5
    assert crossed_after is not None and 20 <= crossed_after <= 40, crossed_after
    assert gauge("defectflow_score_drift_ks", "line-a", "r1") > 0.9
    assert gauge("defectflow_score_drift_ks", "line-b", "r1") < drift.KS_ALERT


def test_monitor_without_reference_exports_nothing_and_a_recalibration_resets(tmp_path):
    mon = drift.DriftMonitor(tmp_path, window=10)
    assert mon.add("line-c", "r2", 1.0) is None
    assert "r2" in mon.missing
    assert gauge("defectflow_score_drift_ks", "line-c", "r2") is None
    assert mon.add("line-c", "r2", float("nan")) is None
    path = drift.save_reference(tmp_path, "r2", 1, np.linspace(0, 1, 30))
    for _ in range(10):
        mon.add("line-c", "r2", 5.0)
    assert gauge("defectflow_score_drift_ks", "line-c", "r2") == 1.0
    # recalibrated around the new scores: the window restarts against the new reference
    drift.save_reference(tmp_path, "r2", 2, np.linspace(4.5, 5.5, 30))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    ks, _ = mon.add("line-c", "r2", 5.0)
    assert gauge("defectflow_score_drift_window_scores", "line-c", "r2") == 1
    assert ks == pytest.approx(0.5, abs=0.05)


def test_rejected_parts_are_no_drift(tmp_path):
    """30 % obvious defects far above the threshold: the OK parts alone are compared."""
    rng = np.random.default_rng(2)
    drift.save_reference(tmp_path, "r3", 1, scores(rng, 60))
    mon = drift.DriftMonitor(tmp_path, window=50)
    counted = 0
    for _ in range(120):
        defective = rng.random() < 0.3
        s = float(rng.normal(30.0, 2.0) if defective else scores(rng, 1)[0])
        counted += mon.add("line-d", "r3", s, below=21.0) is not None
    assert counted < 100
    assert gauge("defectflow_score_drift_ks", "line-d", "r3") < drift.KS_ALERT
    everything = drift.DriftMonitor(tmp_path, window=50)
    for _ in range(120):
        defective = rng.random() < 0.3
        s = float(rng.normal(30.0, 2.0) if defective else scores(rng, 1)[0])
        everything.add("line-e", "r3", s)
    assert gauge("defectflow_score_drift_ks", "line-e", "r3") > 0.2  # why the filter exists
