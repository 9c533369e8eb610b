"""Inference decisions: how tiles are batched and what counts as a valid model output."""

from __future__ import annotations

import numpy as np

from services.common.errors import BadInput


def batch_slices(n: int, max_batch: int) -> list[slice]:
    """Split n tiles into batches of at most max_batch, as evenly as possible.

    Even sizes matter: 17 tiles at max 16 become 9 + 8, not 16 + 1, so no
    request waits on a nearly empty batch.
    """
    if n <= 0:
        return []
    count = -(-n // max_batch)
    base, extra = divmod(n, count)
    out, start = [], 0
    for i in range(count):
        size = base + (1 if i < extra else 0)
        out.append(slice(start, start + size))
        start += size
    return out


def check_outputs(maps: np.ndarray, scores: np.ndarray, n: int, tile: int) -> None:
    """A model answer with the wrong shape or NaN/Inf never reaches a verdict."""
    if maps.shape != (n, 1, tile, tile):
        raise BadInput(
            "bad_model_output", f"anomaly_map shape {maps.shape}, expected {(n, 1, tile, tile)}"
        )
    if scores.shape != (n, 1):
        raise BadInput("bad_model_output", f"score shape {scores.shape}, expected {(n, 1)}")
    if not (np.isfinite(maps).all() and np.isfinite(scores).all()):
        raise BadInput("bad_model_output", "model returned NaN or Inf")
