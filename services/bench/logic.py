"""Benchmark arithmetic: rates, percentiles, where a frame's time went, sizing. No I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from services.common.metrics import stage_spans
from services.tiling.logic import axis_starts


def tiles_per_frame(width: int, height: int, tile: int, overlap: int) -> int:
    """Tiles the tiling service cuts from a whole frame (no ROI)."""
    return len(axis_starts(width, tile, overlap)) * len(axis_starts(height, tile, overlap))


def percentiles(values: Sequence[float], qs: Iterable[float] = (50, 95, 99)) -> dict[str, float]:
    """{"p50": ..., ...}; NaN for an empty sample (printed as such, never as 0)."""
    qs = tuple(qs)
    if not len(values):
        return {f"p{q:g}": float("nan") for q in qs}
    got = np.percentile(np.asarray(values, dtype=np.float64), qs)
    return {f"p{q:g}": float(v) for q, v in zip(qs, got, strict=True)}


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


@dataclass(frozen=True)
class StoredFrame:
    """One stored inspection as the benchmark reads it back from PostgreSQL."""

    captured_ns: int
    stored_ns: int
    stamps: tuple[tuple[str, int, int], ...]  # (stage, received_ns, sent_ns) in path order


def frame_spans(frame: StoredFrame) -> list[tuple[str, str, float]]:
    """(stage, phase, seconds) of one frame: metrics.stage_spans plus the hop from
    postprocess's send to the row's commit in the store ("store", "queue+write")."""
    spans = stage_spans(frame.stamps, frame.captured_ns)
    if frame.stamps:
        last_sent = frame.stamps[-1][2]
        spans.append(("store", "queue+write", max(0.0, (frame.stored_ns - last_sent) / 1e9)))
    return spans


def stage_breakdown(frames: Sequence[StoredFrame]) -> list[dict]:
    """Per (stage, phase) in path order: mean and p50/p99 seconds and the share of the mean
    frame->record latency. Shares add up to ~1 (clock rounding aside)."""
    per: dict[tuple[str, str], list[float]] = defaultdict(list)
    order: list[tuple[str, str]] = []
    for f in frames:
        for stage, phase, s in frame_spans(f):
            key = (stage, phase)
            if key not in per:
                order.append(key)
            per[key].append(s)
    total = float(np.mean([(f.stored_ns - f.captured_ns) / 1e9 for f in frames])) if frames else 0
    rows = []
    for key in order:
        vals = per[key]
        mean = float(np.mean(vals))
        rows.append(
            {
                "stage": key[0],
                "phase": key[1],
                "mean_s": mean,
                **{k + "_s": v for k, v in percentiles(vals, (50, 99)).items()},
                "share": mean / total if total > 0 else float("nan"),
            }
        )
    return rows


def latencies(frames: Sequence[StoredFrame]) -> list[float]:
    """Frame -> record seconds: capture (ingest's clock) to the store's commit stamp."""
    return [max(0.0, (f.stored_ns - f.captured_ns) / 1e9) for f in frames]


def cpu_share(cpu_s: float, wall_s: float) -> float:
    """CPU seconds over wall seconds: 1.0 = one core busy all the time."""
    return cpu_s / wall_s if wall_s > 0 else float("nan")


def per_unit_cost(cpu_s: float, units: int) -> float:
    """CPU milliseconds per unit of work (tile, frame)."""
    return 1000.0 * cpu_s / units if units > 0 else float("nan")


def replicas_for(target_tiles_s: float, tiles_per_core_s: float) -> int:
    """Cores (one busy replica each) needed to feed a model doing `target_tiles_s`."""
    if tiles_per_core_s <= 0 or not np.isfinite(tiles_per_core_s):
        raise ValueError(f"per-core capacity must be positive, got {tiles_per_core_s}")
    return max(1, int(np.ceil(target_tiles_s / tiles_per_core_s)))
