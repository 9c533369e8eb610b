"""Tiling: cut a frame's ROI into overlapping tiles and preprocess them once.

The last row and column are aligned to the ROI border (shifted back, so they
overlap more) instead of padded, so every model input is real pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from services.common.domain import Rect, TileRect


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


def preprocess(
    image: np.ndarray,
    rects: list[TileRect],
    model_input: int,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> np.ndarray:
    """Crop, resize and normalise tiles into one float16 NCHW array (RGB channel order)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
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
