"""The verdict rulebook, one rule per test."""

import math

import numpy as np

from services.common.domain import DefectRecord, Verdict
from services.postprocess.logic import decide, find_defects

DEFECT = DefectRecord("anomaly", 20.0, (10, 10, 20, 12), 20.0, 0.05)


def rule(score, defects=(), complete=True):
    return decide(
        score,
        list(defects),
        image_threshold=10.0,
        review_low=8.0,
        complete=complete,
        tiles_expected=25,
        tiles_received=25 if complete else 24,
    )


def test_incomplete_frame_is_review_whatever_the_score():
    d = rule(1.0, complete=False)
    assert d.verdict == Verdict.REVIEW and "24 of 25" in d.reasons[0]


def test_defect_region_with_score_over_threshold_is_ng():
    assert rule(20.0, [DEFECT]).verdict == Verdict.NG


def test_score_in_review_band_is_review():
    assert rule(9.0).verdict == Verdict.REVIEW


def test_score_over_threshold_without_a_large_enough_region_is_review():
    assert rule(12.0).verdict == Verdict.REVIEW


def test_low_score_is_ok_and_carries_no_defects():
    d = rule(3.0)
    assert d.verdict == Verdict.OK and d.defects == ()


def test_nan_score_is_review():
    assert rule(math.nan).verdict == Verdict.REVIEW


def test_components_below_min_area_are_ignored_and_areas_are_in_mm2():
    amap = np.zeros((100, 100), np.float32)
    amap[10:13, 10:40] = 5.0  # 90 px scratch
    amap[70:72, 70:72] = 9.0  # 4 px speck
    defects = find_defects(amap, 1.0, 8, 0.1, "anomaly")
    assert len(defects) == 1
    d = defects[0]
    assert d.box == (10.0, 10.0, 40.0, 13.0) and d.area_px == 90.0
    assert abs(d.area_mm2 - 0.9) < 1e-6 and d.score == 5.0 and len(d.contour) >= 4


def test_model_disagreement_is_review_not_ok():
    d = decide(3.0, [], 10.0, 8.0, True, 25, 25, disagreements=["detector found scratch"])
    assert d.verdict == Verdict.REVIEW and "detector" in d.reasons[0]


def test_a_sure_anomaly_defect_stays_ng_even_if_the_detector_disagrees():
    d = decide(20.0, [DEFECT], 10.0, 8.0, True, 25, 25, disagreements=["detector found hole"])
    assert d.verdict == Verdict.NG


def test_a_defect_with_a_narrow_dip_is_one_record_and_distant_ones_stay_apart():
    amap = np.zeros((120, 200), np.float32)
    amap[20:24, 10:60] = 5.0  # a scratch ...
    amap[20:24, 60:64] = 0.5  # ... crossing a patch where its map dips below the threshold
    amap[20:24, 64:110] = 5.0
    amap[80:90, 20:30] = 6.0  # a separate spot, 56 px below
    amap[80:90, 150:160] = 7.0  # and another, far to the right
    defects = find_defects(amap, 1.0, 8, 0.1, "anomaly")
    assert sorted(d.box for d in defects) == [
        (10.0, 20.0, 110.0, 24.0),
        (20.0, 80.0, 30.0, 90.0),
        (150.0, 80.0, 160.0, 90.0),
    ]
