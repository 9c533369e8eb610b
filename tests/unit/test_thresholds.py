"""Threshold classes: what each promises, checked on score distributions with known tails."""

import numpy as np
import pytest

from services.common import thresholds as th


def test_target_frr_bound_holds_in_repeated_calibrations():
    # 400 calibrations on fresh good samples: the true FRR of the chosen threshold may
    # exceed the target in at most ~5 % of them (95 % confidence), with binomial slack
    rng = np.random.default_rng(1)
    method = th.TargetFalseReject(target=0.02, confidence=0.95)
    over = 0
    for _ in range(400):
        good = rng.gamma(4.0, 2.0, 400)  # skewed, like distance scores
        choice = method.choose(good)
        true_frr = 1.0 - _gamma_cdf(choice.threshold)
        assert choice.frr_bound <= 0.02
        over += true_frr > 0.02
    assert over / 400 <= 0.08


def _gamma_cdf(x: float) -> float:
    from scipy.stats import gamma

    return float(gamma.cdf(x, 4.0, scale=2.0))


def test_too_few_good_parts_fall_back_to_the_maximum_and_say_how_many_are_needed():
    choice = th.TargetFalseReject(0.01, 0.95).choose(np.arange(20.0))
    assert choice.threshold == 19.0
    assert choice.frr_bound == pytest.approx(1 - 0.05 ** (1 / 20))  # 13.9 %
    assert "299 good parts are needed" in choice.note


def test_more_parts_allow_a_lower_threshold():
    rng = np.random.default_rng(0)
    few = th.TargetFalseReject(0.05, 0.95).choose(rng.normal(size=100)).threshold
    many = th.TargetFalseReject(0.05, 0.95).choose(rng.normal(size=5000)).threshold
    assert many < few


def test_max_normal_quantile_and_k_sigma():
    s = np.array([1.0, 2.0, 3.0, 4.0])
    assert th.MaxNormal(1.1).choose(s).threshold == pytest.approx(4.4)
    assert th.Quantile(0.5).choose(s).threshold == pytest.approx(2.5)
    assert th.KSigma(2).choose(s).threshold == pytest.approx(2.5 + 2 * np.std(s, ddof=1))


def test_f1_needs_defects_and_separates_them_when_given():
    with pytest.raises(ValueError, match="labelled defective"):
        th.F1Optimal().choose([1.0, 2.0])
    c = th.F1Optimal().choose([1.0, 2.0, 3.0], [5.0, 6.0])
    assert 3.0 < c.threshold <= 5.0


def test_bad_scores_are_refused():
    with pytest.raises(ValueError):
        th.MaxNormal().choose([])
    with pytest.raises(ValueError):
        th.Quantile().choose([1.0, np.nan])


def test_pixel_threshold_keeps_good_regions_below_the_defect_area():
    amap = np.zeros((40, 40), np.float32)
    amap[5:8, 5:8] = 3.0  # 9 px blob
    amap[20:30, 20:30] = 1.0  # 100 px of mild texture
    t = th.pixel_threshold_for_area([amap], min_area_px=12)
    assert 1.0 < t <= 3.0  # the big mild region must fall below, the small blob may stay
    t_small = th.pixel_threshold_for_area([amap], min_area_px=5)
    assert t_small > 3.0 - 1e-3  # now even the 9 px blob is too big


def test_a_rule_is_built_by_name_with_its_own_parameter():
    from services.common.thresholds import method_named

    rule = method_named("target_frr", target_frr=0.02, confidence=0.9)
    assert (type(rule).__name__, rule.target, rule.confidence) == ("TargetFalseReject", 0.02, 0.9)
    assert method_named("quantile", quantile=0.95).p == 0.95
    assert method_named("k_sigma", k=4.0).k == 4.0
    with pytest.raises(ValueError, match="choose one of max_normal"):
        method_named("median")
