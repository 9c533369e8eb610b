"""Tiling: condition a frame, cut its ROI into overlapping tiles and preprocess them once.

The last row and column are aligned to the ROI border (shifted back, so they
overlap more) instead of padded, so every model input is real pixels. With a
context margin each tile's model input is its window: the tile grown by the margin
on every side, real pixels beyond the tile and beyond the ROI, so features at a tile
or ROI edge see the part and not padding (only where a window leaves the frame itself
is the frame mirrored). The model cuts the margin off its map.

`recipe_tiles` is the one frame -> tiles function of fit, calibration and offline
inspection; the tiling service runs the same steps with a table-driven normalisation
(services/tiling/main.py, bit-identical, tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from services.common import register
from services.common.domain import Rect, TileRect
from services.common.recipes import Preprocess, Recipe

# flat field: the ROI is averaged down to this grid before the surface is fitted
FLAT_GRID = 32
FLAT_LEVEL = 128.0  # channel level when the recipe records none
DETAIL_SIGMA = 8.0  # px: what this blur removes is the detail that contrast scaling scales


def axis_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis covering [0, length) with tiles of `tile` px."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(
            f"need tile > 0 and 0 <= overlap < tile, got tile={tile} overlap={overlap}"
        )
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def tile_grid(roi: Rect, tile: int, overlap: int) -> list[TileRect]:
    """Tiles of at most `tile` px covering the ROI, row-major, in frame coordinates."""
    rects = []
    for ty in axis_starts(roi.height, tile, overlap):
        for tx in axis_starts(roi.width, tile, overlap):
            rects.append(
                TileRect(
                    x=roi.x + tx,
                    y=roi.y + ty,
                    width=min(tile, roi.width),
                    height=min(tile, roi.height),
                    index=len(rects),
                )
            )
    return rects


def clip_roi(roi: Rect | None, width: int, height: int) -> Rect:
    if roi is None:
        return Rect(0, 0, width, height)
    x0, y0 = min(roi.x, width), min(roi.y, height)
    clipped = Rect(x0, y0, min(roi.width, width - x0), min(roi.height, height - y0))
    if clipped.width <= 0 or clipped.height <= 0:
        raise ValueError(f"ROI {roi} lies outside the {width}x{height} frame")
    return clipped


def recipe_roi(recipe: Recipe, width: int, height: int) -> Rect:
    r = recipe.roi
    return clip_roi(Rect(r.x, r.y, r.width, r.height) if r else None, width, height)


def plan_tiles(recipe: Recipe, width: int, height: int) -> tuple[Rect, list[TileRect]]:
    """The ROI of a width x height frame and its tiles, as the recipe says."""
    roi = recipe_roi(recipe, width, height)
    return roi, tile_grid(roi, recipe.tiling.tile_size, recipe.tiling.overlap)


def windows(rects: list[TileRect], margin: int) -> list[TileRect]:
    """Each tile grown by `margin` frame pixels on every side (may leave the frame)."""
    if margin == 0:
        return rects
    return [
        TileRect(r.x - margin, r.y - margin, r.width + 2 * margin, r.height + 2 * margin, r.index)
        for r in rects
    ]


def inside_frame(image: np.ndarray, rects: list[TileRect]) -> tuple[np.ndarray, list[TileRect]]:
    """The image mirrored outward as far as any rect leaves it, and the rects moved to match
    (unchanged when every rect lies inside)."""
    h, w = image.shape[:2]
    left = max(0, -min(r.x for r in rects))
    top = max(0, -min(r.y for r in rects))
    right = max(0, max(r.x1 for r in rects) - w)
    bottom = max(0, max(r.y1 for r in rects) - h)
    if not (left or top or right or bottom):
        return image, rects
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    moved = [TileRect(r.x + left, r.y + top, r.width, r.height, r.index) for r in rects]
    return padded, moved


def _quadratic_terms(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """1, y, x, y², xy, x² on the last axis: the flat field's surface."""
    return np.stack([np.ones_like(xs), ys, xs, ys * ys, xs * ys, xs * xs], axis=-1)


def flat_field_surface(image: np.ndarray, roi: Rect) -> np.ndarray:
    """Per channel, the log of the light as a quadratic surface least-squares fitted to
    the ROI averaged down to a FLAT_GRID grid, with one refit that ignores cells far from
    the first fit (a large defect must not bend the surface). Light is a product (gain x
    gradient x vignetting), so its log is a sum that a quadratic follows where a
    quadratic in grey levels cannot (docs/accuracy-steps.md: the residual under a wide
    light change drops by a third; a 4th degree followed the light better inside the ROI
    but overshot in the context margin beyond it). Returns the coefficients [6, C] in the
    ROI's coordinates scaled to [-1, 1]."""
    area = image[roi.y : roi.y1, roi.x : roi.x1].astype(np.float32)
    if area.ndim == 2:
        area = area[:, :, None]
    g = min(FLAT_GRID, roi.width, roi.height)
    small = cv2.resize(area, (g, g), interpolation=cv2.INTER_AREA).reshape(g * g, -1)
    small = np.log(np.maximum(small, 1.0))
    centres = (np.arange(g, dtype=np.float32) + 0.5) / g * 2.0 - 1.0
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    a = _quadratic_terms(xs.ravel(), ys.ravel())
    coef = np.linalg.lstsq(a, small, rcond=None)[0]
    resid = np.abs(small - a @ coef).max(axis=1)
    keep = resid <= 3.0 * max(float(np.median(resid)) * 1.4826, 1e-4)
    if keep.sum() >= 3 * a.shape[1]:
        coef = np.linalg.lstsq(a[keep], small[keep], rcond=None)[0]
    return coef.astype(np.float32)


@dataclass(frozen=True)
class Conditioned:
    """A frame as the models see it, and what became of its registration."""

    image: np.ndarray  # uint8, the input's shape; in part coordinates when registered
    part_to_frame: np.ndarray | None = None  # 2x3: part coordinates -> frame px (registered)
    review: tuple[str, ...] = ()  # why the frame must be judged REVIEW (failed registration)


def condition(image: np.ndarray, recipe: Recipe) -> Conditioned:
    """The frame as the models see it, before tiling. In order, each step where the
    recipe asks for it: a Gaussian blur (sensor noise), the flat field (gain, gradients,
    vignetting, colour-gain drift), registration to the good parts' reference (placement;
    a frame that does not align stays as it is and is marked for REVIEW), the detail
    contrast (defocus, contrast drift); the part's own texture and defects stay."""
    p: Preprocess = recipe.preprocess
    if p.smooth_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), p.smooth_sigma)
    if p.illumination != "none":
        image = flat_field(image, recipe)
    part_to_frame, review = None, ()
    if p.registration is not None:
        h, w = image.shape[:2]
        alignment = register.align(image, recipe_roi(recipe, w, h), p.registration)
        if alignment.failure:
            review = (alignment.failure,)
        else:
            part_to_frame = alignment.part_to_frame
            image = register.to_part(image, part_to_frame)
    if p.contrast:
        image = scale_detail(image, recipe, p.contrast_level)
    return Conditioned(image, part_to_frame, review)


def _detail(image: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, np.ndarray, float]:
    """(frame as float, its 8 px blur, standard deviation of their difference in the ROI):
    one blur serves both the measurement and the scaling."""
    h, w = image.shape[:2]
    roi = recipe_roi(recipe, w, h)
    f = image.astype(np.float32)
    low = cv2.GaussianBlur(f, (0, 0), DETAIL_SIGMA)
    detail = (f - low)[roi.y : roi.y1, roi.x : roi.x1]
    return f, low, float(max(detail.std(), 1e-3))


def detail_level(image: np.ndarray, recipe: Recipe) -> float:
    """Standard deviation of the frame's detail (the frame minus its 8 px blur) in the ROI."""
    return _detail(image, recipe)[2]


def scale_detail(image: np.ndarray, recipe: Recipe, level: float | None) -> np.ndarray:
    """The frame with its detail scaled so that its standard deviation in the ROI is
    `level` (None: left as it is); the smooth part (background, stains, shading) stays."""
    f, low, std = _detail(image, recipe)
    gain = (level or std) / std
    return np.clip(low + (f - low) * gain + 0.5, 0, 255).astype(np.uint8)


def flat_field(image: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Each channel divided by its smooth surface (fitted inside the ROI, extended over the
    frame) and scaled to the recipe's level."""
    p = recipe.preprocess
    h, w = image.shape[:2]
    roi = recipe_roi(recipe, w, h)
    coef = flat_field_surface(image, roi)
    # surface over the whole frame in the ROI's normalised coordinates, at 1/8 resolution
    sh, sw = max(2, h // 8), max(2, w // 8)
    xs = ((np.arange(sw, dtype=np.float32) + 0.5) * w / sw - roi.x) / roi.width * 2.0 - 1.0
    ys = ((np.arange(sh, dtype=np.float32) + 0.5) * h / sh - roi.y) / roi.height * 2.0 - 1.0
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    surface = np.exp(_quadratic_terms(xx, yy) @ coef)  # [sh, sw, C], grey levels
    channels = coef.shape[1]
    level = np.asarray(p.level if p.level else (FLAT_LEVEL,) * 3, np.float32)[:channels]
    gain = level / np.maximum(surface, 1.0)
    gain = cv2.resize(gain, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, channels)
    out = image.astype(np.float32).reshape(h, w, channels) * gain
    return np.clip(out + 0.5, 0, 255).astype(np.uint8).reshape(image.shape)


def channel_level(image: np.ndarray, recipe: Recipe) -> tuple[float, float, float]:
    """Mean B, G, R of the ROI's flat-field surface: what `fit` records as the level."""
    h, w = image.shape[:2]
    coef = flat_field_surface(image, recipe_roi(recipe, w, h))
    g = np.linspace(-1.0, 1.0, 9, dtype=np.float32)
    yy, xx = np.meshgrid(g, g, indexing="ij")
    means = np.exp(_quadratic_terms(xx.ravel(), yy.ravel()) @ coef).mean(axis=0)
    if means.size == 1:
        means = np.repeat(means, 3)
    return (float(means[0]), float(means[1]), float(means[2]))


@dataclass(frozen=True)
class FrameTiles:
    rects: list[TileRect]
    tiles: np.ndarray  # model inputs [N, 3, S, S] float16, S = the recipe's input size
    conditioned: Conditioned


def recipe_tiles(image: np.ndarray, recipe: Recipe) -> FrameTiles:
    """Frame -> its tiles and model inputs, conditioned as the recipe says."""
    cond = condition(image, recipe)
    _, rects = plan_tiles(recipe, cond.image.shape[1], cond.image.shape[0])
    t = recipe.tiling
    tiles = preprocess(cond.image, windows(rects, t.context_px), t.input_size, t.mean, t.std)
    return FrameTiles(rects, tiles, cond)


def preprocess(
    image: np.ndarray,
    rects: list[TileRect],
    model_input: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> np.ndarray:
    """Crop, resize and normalise tiles into one float16 NCHW array (RGB channel order);
    rects that leave the frame see it mirrored."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if rects:
        image, rects = inside_frame(image, rects)
    out = np.empty((len(rects), 3, model_input, model_input), np.float16)
    scale = np.float32(1.0 / 255.0) / np.asarray(std, np.float32)
    shift = np.asarray(mean, np.float32) / np.asarray(std, np.float32)
    for i, r in enumerate(rects):
        crop = image[r.y : r.y1, r.x : r.x1]
        if crop.shape[0] != model_input or crop.shape[1] != model_input:
            crop = cv2.resize(crop, (model_input, model_input), interpolation=cv2.INTER_AREA)
        rgb = crop[:, :, ::-1].astype(np.float32)
        out[i] = (rgb * scale - shift).transpose(2, 0, 1)
    return out


def chunk_ranges(n_tiles: int, bytes_per_tile: int, budget: int) -> list[range]:
    """Split n tiles into consecutive chunks whose pixel bytes stay within `budget`."""
    per_chunk = max(1, budget // max(1, bytes_per_tile))
    n_chunks = max(1, math.ceil(n_tiles / per_chunk))
    return [range(i * per_chunk, min(n_tiles, (i + 1) * per_chunk)) for i in range(n_chunks)]
