import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.domain import Rect
from services.postprocess.logic import stitch
from services.tiling.logic import axis_starts, chunk_ranges, preprocess, tile_grid


@st.composite
def grids(draw):
    tile = draw(st.integers(8, 96))
    overlap = draw(st.integers(0, tile - 1))
    roi = Rect(
        draw(st.integers(0, 50)),
        draw(st.integers(0, 50)),
        draw(st.integers(1, 400)),
        draw(st.integers(1, 400)),
    )
    return roi, tile, overlap


@given(grids())
@settings(max_examples=200, deadline=None)
def test_tiles_cover_every_roi_pixel_and_stay_inside(g):
    roi, tile, overlap = g
    covered = np.zeros((roi.y1, roi.x1), bool)
    for r in tile_grid(roi, tile, overlap):
        assert roi.x <= r.x and r.x1 <= roi.x1 and roi.y <= r.y and r.y1 <= roi.y1
        assert r.width == min(tile, roi.width) and r.height == min(tile, roi.height)
        covered[r.y : r.y1, r.x : r.x1] = True
    assert covered[roi.y :, roi.x :].all()


@given(st.integers(1, 2000), st.integers(8, 256), st.data())
def test_axis_starts_overlap_at_least_as_configured(length, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    starts = axis_starts(length, tile, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert starts[-1] + min(tile, length) == length  # last tile aligned to the border, no padding
    for a, b in zip(starts, starts[1:], strict=False):
        assert b - a <= tile - overlap


@given(grids(), st.sampled_from(["max", "mean"]))
@settings(max_examples=100, deadline=None)
def test_tile_then_stitch_of_identity_map_returns_the_original(g, mode):
    roi, tile, overlap = g
    w, h = roi.x1 + 3, roi.y1 + 2
    original = np.random.default_rng(0).random((h, w)).astype(np.float32)
    tiles = [(r, original[r.y : r.y1, r.x : r.x1]) for r in tile_grid(roi, tile, overlap)]
    out = stitch((w, h), tiles, mode)
    np.testing.assert_allclose(
        out[roi.y : roi.y1, roi.x : roi.x1], original[roi.y : roi.y1, roi.x : roi.x1], rtol=0
    )
    assert not out[:, roi.x1 :].any() and not out[roi.y1 :, :].any()


def test_preprocess_normalises_once_to_float16_rgb():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :, 2] = 255  # red in BGR
    out = preprocess(
        img, tile_grid(Rect(0, 0, 64, 64), 32, 0), 16, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    )
    assert out.shape == (4, 3, 16, 16) and out.dtype == np.float16
    assert np.allclose(out[:, 0], 1.0) and np.allclose(out[:, 1], -1.0)


def test_chunks_respect_the_byte_budget():
    ranges = chunk_ranges(25, 98_304, 512 * 1024)
    assert [len(r) for r in ranges] == [5, 5, 5, 5, 5]
    assert sum(len(r) for r in ranges) == 25
