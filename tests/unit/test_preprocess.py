"""Frame conditioning and context windows: what the models see, identical everywhere."""

from __future__ import annotations

import numpy as np
import torch

from models.anomaly.augment import line_nuisance, with_nuisance
from models.anomaly.patchcore import PatchFeatures
from services.common.domain import TileRect
from services.common.recipes import Preprocess, Recipe, Roi, Thresholds, Tiling
from services.common.tensors import tile_core
from services.tiling.logic import condition, inside_frame, plan_tiles, recipe_tiles, windows
from services.tiling.main import preprocess_tiles


def recipe(illumination="none", context=0, roi=None, level=None) -> Recipe:
    return Recipe(
        id="t",
        version=1,
        roi=roi,
        tiling=Tiling(
            tile_size=64,
            overlap=16,
            model_input=64,
            context=context,
            mean=(0.5,) * 3,
            std=(0.5,) * 3,
        ),
        preprocess=Preprocess(illumination=illumination, level=level),
        model={"name": "m"},
        thresholds=Thresholds(pixel=1, image=1, review_low=1),
    )


def texture(h=256, w=256, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = 120 + 25 * np.sin(np.arange(w) / 3.0)[None, :] + rng.normal(0, 6, (h, w))
    return np.repeat(base[:, :, None], 3, axis=2).astype(np.float32)


def lit(img: np.ndarray, gain, ramp, colour) -> np.ndarray:
    h, w = img.shape[:2]
    xx = np.arange(w, dtype=np.float32)[None, :] / w - 0.5
    light = gain * (1 + ramp * xx)
    out = img * light[:, :, None] * np.asarray(colour, np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def test_flat_field_removes_gain_gradient_and_colour_drift():
    base = texture()
    r = recipe("flat_field", roi=Roi(x=16, y=16, width=224, height=224))
    a = lit(base, 1.0, 0.0, (1, 1, 1))
    b = lit(base, 0.85, 0.3, (1.08, 0.95, 0.9))  # darker, a 30 % ramp, colour drift
    raw_diff = np.abs(a.astype(float) - b.astype(float)).mean()
    cond_diff = np.abs(
        condition(a, r).image.astype(float) - condition(b, r).image.astype(float)
    ).mean()
    assert raw_diff > 10
    assert cond_diff < 2.0


def test_flat_field_keeps_a_local_stain():
    base = texture(seed=1)
    yy, xx = np.mgrid[0:256, 0:256]
    stain = ((yy - 128) ** 2 + (xx - 100) ** 2 < 15**2).astype(np.float32) * -30
    a = lit(base, 1.0, 0.2, (1, 1, 1))
    b = lit(base + stain[:, :, None], 1.0, 0.2, (1, 1, 1))
    r = recipe("flat_field", level=(120.0, 120.0, 120.0))
    d = condition(b, r).image.astype(float) - condition(a, r).image.astype(float)
    inside = d[stain < 0].mean()
    assert -36 < inside < -24  # the stain keeps its contrast
    assert np.abs(d[stain == 0]).mean() < 1.0  # and nothing else moves


def test_no_illumination_setting_leaves_the_frame_alone():
    img = lit(texture(), 0.9, 0.2, (1, 1, 1))
    assert condition(img, recipe()).image is img


def test_windows_see_real_pixels_beyond_the_roi_and_mirror_only_outside_the_frame():
    img = np.arange(256 * 256, dtype=np.uint32).reshape(256, 256) % 251
    img = np.repeat(img.astype(np.uint8)[:, :, None], 3, axis=2)
    r = recipe(context=16, roi=Roi(x=32, y=32, width=192, height=192))
    ft = recipe_tiles(img, r)
    rects, tiles = ft.rects, ft.tiles
    assert tiles.shape[1:] == (3, 96, 96)  # 64 + 2 x 16
    first = rects[0]
    assert (first.x, first.y) == (32, 32)
    # the window's top-left pixel is the frame pixel 16 px up-left of the tile: real pixels
    want = (img[16, 16, 2] / 255.0 - 0.5) / 0.5
    assert abs(float(tiles[0, 0, 0, 0]) - want) < 1e-2
    # at the frame's own edge the window mirrors the frame
    image, moved = inside_frame(img, [TileRect(-4, 0, 8, 8, 0)])
    assert moved[0].x == 0 and image.shape[1] == 260
    assert np.array_equal(image[0, 0], img[0, 4]) and np.array_equal(image[0, 4], img[0, 0])


def test_service_and_offline_paths_give_the_same_windows():
    img = lit(texture(seed=2), 0.9, 0.25, (1.05, 1.0, 0.9))
    r = recipe("flat_field", context=16, roi=Roi(x=8, y=8, width=240, height=240))
    ft = recipe_tiles(img, r)
    rects, offline = ft.rects, ft.tiles
    _, plan = plan_tiles(r, 256, 256)
    service = preprocess_tiles(
        condition(img, r).image, windows(plan, r.tiling.context_px), r.tiling
    )
    assert plan == rects
    assert np.array_equal(service.view(np.uint16), offline.view(np.uint16))
    assert np.array_equal(tile_core(offline, 64), offline[:, :, 16:80, 16:80])


def test_context_features_are_the_window_features_cut_to_the_tile():
    torch.manual_seed(0)
    window = torch.rand(1, 3, 96, 96) * 2 - 1
    with torch.no_grad():
        cut = PatchFeatures(context=16)(window)
        full = PatchFeatures(context=0)(window)
    assert cut.shape[-2:] == (8, 8)
    assert torch.allclose(cut, full[:, :, 2:10, 2:10])
    # and they differ from features of the tile alone, which see padding at its edges
    with torch.no_grad():
        alone = PatchFeatures(context=0)(window[:, :, 16:80, 16:80])
    assert not torch.allclose(cut[:, :, 0], alone[:, :, 0], atol=1e-3)


def test_line_nuisance_copies_are_seeded_and_differ_from_the_original():
    img = lit(texture(seed=3), 1.0, 0.0, (1, 1, 1))
    a, b = line_nuisance(img, 7), line_nuisance(img, 7)
    assert np.array_equal(a, b) and a.shape == img.shape and a.dtype == np.uint8
    assert np.abs(a.astype(float) - img.astype(float)).mean() > 2
    out = with_nuisance([img, img], 2, seed=0)
    assert len(out) == 6 and out[0] is img and not np.array_equal(out[2], out[4])


def test_candidates_name_only_fields_fit_may_change():
    import pytest

    from services.common.recipes import Candidate, RecipeError, with_settings

    with pytest.raises(ValueError, match="candidates set tiling"):
        Candidate(label="bad", set={"thresholds.image": 3.0})
    r = recipe()
    changed = with_settings(r, {"fit.stride": 4, "tiling.context": 16})
    assert (changed.fit.stride, changed.tiling.context, r.fit.stride) == (4, 16, 8)
    with pytest.raises(RecipeError, match="invalid"):
        with_settings(r, {"tiling.context": 8})  # not a multiple of 16


def test_pasted_defects_stay_inside_the_roi_and_pick_prefers_the_earlier_on_a_tie():
    from models.anomaly.choose import Trial, paste_defect, pick

    img = lit(texture(seed=4), 1.0, 0.0, (1, 1, 1))
    r = recipe(roi=Roi(x=64, y=64, width=128, height=128))
    for seed in range(12):
        changed = np.abs(paste_defect(img, r, seed).astype(int) - img.astype(int)).max(axis=2)
        ys, xs = np.nonzero(changed > 2)
        assert len(ys) > 0
        assert ys.min() >= 64 - 6 and ys.max() < 192 + 6 and xs.min() >= 64 - 6
    trials = [Trial("a", r, 0.90, 1, 1), Trial("b", r, 0.904, 1, 1), Trial("c", r, 0.95, 1, 1)]
    assert pick(trials).label == "c"
    assert pick(trials[:2]).label == "a"  # within 0.005 of the best: the earlier


def test_contrast_scaling_undoes_a_defocus_and_keeps_a_stain():
    import cv2

    from services.tiling.logic import detail_level

    base = texture(seed=5)
    yy, xx = np.mgrid[0:256, 0:256]
    stain = ((yy - 128) ** 2 + (xx - 128) ** 2 < 30**2).astype(np.float32) * -25
    sharp = np.clip(base + stain[:, :, None], 0, 255).astype(np.uint8)
    soft = cv2.GaussianBlur(sharp, (0, 0), 2.0)  # the lens defocused
    r = recipe().model_copy(
        update={
            "preprocess": Preprocess(contrast=True, contrast_level=detail_level(sharp, recipe()))
        }
    )
    before = detail_level(soft, r) / detail_level(sharp, r)
    after = detail_level(condition(soft, r).image, r) / detail_level(condition(sharp, r).image, r)
    assert before < 0.8 and abs(after - 1.0) < 0.03
    # the stain is smooth: scaling the detail leaves its depth
    depth = lambda img: float(img[100:156, 100:156].mean() - img[:, 200:].mean())  # noqa: E731
    assert abs(depth(condition(soft, r).image.astype(float)) - depth(soft.astype(float))) < 2


def test_smoothing_lowers_sensor_noise():
    rng = np.random.default_rng(6)
    noisy = np.clip(128 + rng.normal(0, 8, (128, 128, 3)), 0, 255).astype(np.uint8)
    r = recipe().model_copy(update={"preprocess": Preprocess(smooth_sigma=1.5)})
    assert condition(noisy, r).image.astype(float).std() < 0.4 * noisy.astype(float).std()
