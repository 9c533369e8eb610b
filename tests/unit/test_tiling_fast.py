"""Tiling's table-driven preprocessing gives exactly logic.preprocess's tensors."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.domain import Rect
from services.common.recipes import Tiling
from services.tiling.logic import preprocess, tile_grid
from services.tiling.main import preprocess_tiles


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and np.array_equal(a.view(np.uint16), b.view(np.uint16))
    )


@pytest.mark.parametrize(
    "mean,std",
    [
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ((0, 0, 0), (1, 1, 1)),
    ],
)
@pytest.mark.parametrize("shape", [(300, 420, 3), (256, 256)])
def test_bit_identical_to_logic_preprocess(mean, std, shape):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, shape, dtype=np.uint8)  # every value, mono and BGR
    t = Tiling(tile_size=128, overlap=16, model_input=128, mean=mean, std=std)
    rects = tile_grid(Rect(10, 20, shape[1] - 10, shape[0] - 20), 128, 16)
    want = preprocess(image, rects, 128, mean, std)
    got = preprocess_tiles(image, rects, t)
    assert same(got, want)


def test_resized_tiles_take_the_reference_path():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    t = Tiling(tile_size=256, overlap=32, model_input=128, mean=(0.5,) * 3, std=(0.5,) * 3)
    rects = tile_grid(Rect(0, 0, 512, 512), 256, 32)
    assert same(preprocess_tiles(image, rects, t), preprocess(image, rects, 128, t.mean, t.std))


def test_a_changed_pixel_changes_only_its_tiles():
    image = np.full((256, 256, 3), 128, np.uint8)
    t = Tiling(tile_size=128, overlap=16, model_input=128, mean=(0.5,) * 3, std=(0.5,) * 3)
    rects = tile_grid(Rect(0, 0, 256, 256), 128, 16)
    base = preprocess_tiles(image, rects, t)
    image[5, 5] = (0, 0, 255)  # red, BGR: lands in channel 0 (R) of the first tile only
    moved = preprocess_tiles(image, rects, t)
    assert moved[0, 0, 5, 5] != base[0, 0, 5, 5]
    assert moved[0, 2, 5, 5] != base[0, 2, 5, 5]
    assert np.array_equal(moved[1:], base[1:])
