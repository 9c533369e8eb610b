"""numpy <-> defectflow.v1.Tensor, with the checks a decoder of untrusted bytes needs."""

from __future__ import annotations

import math

import cv2
import numpy as np
from defectflow.v1 import common_pb2

from services.common.errors import BadInput

ALLOWED_DTYPES = {"uint8", "float16", "float32"}


def to_tensor(array: np.ndarray) -> common_pb2.Tensor:
    a = np.ascontiguousarray(array)
    if a.dtype.name not in ALLOWED_DTYPES:
        raise ValueError(f"tensor dtype {a.dtype.name} not in {sorted(ALLOWED_DTYPES)}")
    return common_pb2.Tensor(
        dtype=a.dtype.name, shape=list(a.shape), data=a.astype(a.dtype.newbyteorder("<")).tobytes()
    )


def from_tensor(t: common_pb2.Tensor, expect_shape: tuple[int, ...] | None = None) -> np.ndarray:
    if t.dtype not in ALLOWED_DTYPES:
        raise BadInput("bad_tensor", f"tensor dtype {t.dtype!r} not in {sorted(ALLOWED_DTYPES)}")
    shape = tuple(int(s) for s in t.shape)
    if any(s < 0 for s in shape):
        raise BadInput("bad_tensor", f"negative dimension in tensor shape {shape}")
    dtype = np.dtype(t.dtype).newbyteorder("<")
    expected = math.prod(shape) * dtype.itemsize
    if len(t.data) != expected:
        raise BadInput(
            "bad_tensor",
            f"tensor of shape {shape} {t.dtype} needs {expected} bytes, got {len(t.data)}",
        )
    if expect_shape is not None and shape != expect_shape:
        raise BadInput("bad_tensor", f"tensor shape {shape}, expected {expect_shape}")
    return np.frombuffer(t.data, dtype).reshape(shape)


def tile_core(windows: np.ndarray, size: int) -> np.ndarray:
    """The central size x size pixels of model inputs [N,C,S,S]: the tiles without their
    context margin, for models that take the tile alone (detectors)."""
    c = (windows.shape[-1] - size) // 2
    return np.ascontiguousarray(windows[..., c : c + size, c : c + size]) if c else windows


def resize_tiles(tiles: np.ndarray, size: int) -> np.ndarray:
    """Model inputs [N,C,S,S] resized to [N,C,size,size] (area interpolation, same dtype),
    for a model that takes another tile size than the one the recipe cuts."""
    if tiles.shape[-1] == size and tiles.shape[-2] == size:
        return tiles
    out = np.empty((*tiles.shape[:2], size, size), tiles.dtype)
    for i, t in enumerate(tiles):
        hwc = np.ascontiguousarray(t.transpose(1, 2, 0), dtype=np.float32)
        small = cv2.resize(hwc, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = small.reshape(size, size, -1).transpose(2, 0, 1)
    return out
