"""The stock PatchCore the product is measured against: it must be a working baseline
(obvious defects score above good parts, its map points at them), confined to its ROI,
and calibrated by the product's rule."""

import numpy as np
import pytest

from models.data.mvtec import SynthPlan, write_synthetic
from models.eval.baseline import StockPatchCore, evaluate_baseline
from services.common.recipes import Roi
from services.common.synthetic import render_part

SIZE = (192, 192)
FAMILY = "woven_fabric"
ROI = Roi(x=16, y=16, width=160, height=160)


@pytest.fixture(scope="module")
def stock() -> StockPatchCore:
    good = [render_part(FAMILY, s, SIZE)[0] for s in range(6)]
    return StockPatchCore.fit(good, ROI)


def test_bank_is_one_percent_of_the_training_patches(stock):
    patches_per_image = (SIZE[0] // 8) * (SIZE[1] // 8)
    assert len(stock.bank) == round(0.01 * 6 * patches_per_image)


def test_obvious_defects_score_above_every_good_part_and_the_map_points_at_them(stock):
    good = [stock.predict(render_part(FAMILY, s, SIZE)[0]).score for s in range(100, 106)]
    hits = 0
    for n, kind in enumerate(("hole", "spot", "contamination", "hole", "spot")):
        image, truth = render_part(FAMILY, 200 + n, SIZE, kind, "obvious")
        p = stock.predict(image)
        assert p.score > max(good), (kind, p.score, max(good))
        y, x = np.unravel_index(np.argmax(p.anomaly_map), p.anomaly_map.shape)
        hits += bool(truth.mask[max(0, y - 8) : y + 8, max(0, x - 8) : x + 8].any())
    assert hits >= 4


def test_map_is_zero_outside_the_roi_and_the_score_is_its_maximum_inside(stock):
    image, _ = render_part(FAMILY, 300, SIZE, "hole", "obvious")
    p = stock.predict(image)
    inside = np.zeros(p.anomaly_map.shape, bool)
    inside[ROI.y : ROI.y + ROI.height, ROI.x : ROI.x + ROI.width] = True
    assert p.anomaly_map.shape == image.shape[:2]
    assert not p.anomaly_map[~inside].any()
    assert p.score == pytest.approx(float(p.anomaly_map[inside].max()))
    assert p.anomaly_map[inside].min() > 0


def test_threshold_is_the_held_out_maximum_times_1_05(stock):
    held_out = [render_part(FAMILY, s, SIZE)[0] for s in (400, 401)]
    top = max(stock.predict(im).score for im in held_out)
    assert stock.threshold(held_out) == pytest.approx(1.05 * top)


def test_evaluation_of_a_generated_family(stock, tmp_path):
    plan = SynthPlan(FAMILY, SIZE, 0, 4, 2, seed=8, types=("hole", "stain"))
    write_synthetic(tmp_path, plan)
    threshold = 1e9  # nothing is rejected: every good passes, every defect escapes
    r = evaluate_baseline(tmp_path / FAMILY, stock, threshold)
    assert r["images"] == {"good": 4, "defective": 4}
    assert r["false_reject_rate"] == 0.0 and r["escape_rate"] == 1.0
    assert r["escapes_by_type"] == {"hole": "2/2", "stain": "2/2"}
    # an obvious hole is the easiest thing to find; every good part scores below it
    assert r["image_auroc_by_type"]["hole"] >= r["image_auroc_by_type"]["stain"]
    assert r["image_auroc_obvious"] == 1.0
    assert 0.0 <= r["aupro_0.3"] <= 1.0 and r["pixel_auroc"] > 0.5
    strict = evaluate_baseline(tmp_path / FAMILY, stock, 0.0)
    assert strict["false_reject_rate"] == 1.0 and strict["escape_rate"] == 0.0
