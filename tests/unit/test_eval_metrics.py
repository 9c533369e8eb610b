"""The accuracy metrics against hand-computed values."""

import numpy as np
import pytest

from models.eval import metrics
from models.eval.metrics import Detection


def test_aupro_is_one_for_a_perfect_map_and_zero_for_an_inverted_one():
    mask = np.zeros((32, 32), bool)
    mask[4:10, 4:10] = True
    mask[20:22, 20:30] = True  # a second, thin region counts as much as the first
    assert metrics.aupro([mask], [mask.astype(np.float32)]) == pytest.approx(1.0)
    assert metrics.aupro([mask], [(~mask).astype(np.float32)]) == pytest.approx(0.0)


def test_aupro_of_a_random_map_is_near_the_chance_area():
    # random scores: PRO(t) ~ FPR(t), area up to 0.3 = 0.3^2 / 2, normalised: 0.15
    rng = np.random.default_rng(0)
    masks = [rng.random((64, 64)) < 0.05 for _ in range(4)]
    maps = [rng.random((64, 64)).astype(np.float32) for _ in range(4)]
    assert metrics.aupro(masks, maps) == pytest.approx(0.15, abs=0.03)


def test_aupro_weights_regions_not_pixels():
    # a detected big region and a missed small one: PRO 0.5 at every FPR, whatever the sizes
    mask = np.zeros((40, 40), bool)
    mask[0:20, 0:20] = True
    mask[30:32, 30:32] = True
    amap = np.random.default_rng(0).uniform(0.01, 0.5, (40, 40)).astype(np.float32)
    amap[0:20, 0:20] = 1.0
    amap[30:32, 30:32] = 0.0  # missed: below every defect-free pixel
    assert metrics.aupro([mask], [amap]) == pytest.approx(0.5, abs=0.01)


def test_average_precision_by_hand():
    truths = {"a": [(0, 0, 10, 10)], "b": [(0, 0, 10, 10)], "c": []}
    dets = [
        Detection("a", 0.9, (0, 0, 10, 10)),  # TP   P=1   R=.5
        Detection("c", 0.8, (0, 0, 10, 10)),  # FP   P=.5
        Detection("b", 0.7, (1, 1, 11, 11)),  # TP (IoU 0.68)  P=2/3 R=1
        Detection("a", 0.6, (0, 0, 10, 10)),  # duplicate: FP
    ]
    # all-point: 0.5 * 1 + 0.5 * 2/3
    assert metrics.average_precision(dets, truths) == pytest.approx(0.5 + 1 / 3)


def test_a_box_below_iou_half_is_a_miss():
    assert (
        metrics.average_precision([Detection("a", 1.0, (0, 0, 10, 4))], {"a": [(0, 0, 10, 10)]})
        == 0.0
    )


def test_mean_ap_per_class():
    truths = {"a": [((0, 0, 10, 10), "scratch"), ((20, 20, 30, 30), "hole")]}
    dets = [
        Detection("a", 0.9, (0, 0, 10, 10), "scratch"),
        Detection("a", 0.9, (20, 20, 30, 30), "spot"),
    ]
    m, per = metrics.mean_ap(dets, truths)
    assert per == {"hole": 0.0, "scratch": 1.0} and m == 0.5


def test_image_auroc():
    assert metrics.image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
