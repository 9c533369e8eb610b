"""Fit, export and calibrate the local-statistics anomaly model for a recipe.

Fitting and calibration run the exact tiling and stitching code the services
run, on good parts only (factories rarely have defect samples on day one).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.anomaly.local_stats import LocalStatsAnomaly, fit_gaussian
from models.synth.parts import render_part
from services.common.domain import Rect
from services.common.recipes import Recipe, Thresholds
from services.postprocess.logic import stitch
from services.tiling.logic import clip_roi, preprocess, tile_grid

OPSET = 17


def recipe_tiles(image: np.ndarray, recipe: Recipe):
    h, w = image.shape[:2]
    roi = recipe.roi
    rect = clip_roi(Rect(roi.x, roi.y, roi.width, roi.height) if roi else None, w, h)
    rects = tile_grid(rect, recipe.tiling.tile_size, recipe.tiling.overlap)
    t = recipe.tiling
    return rects, preprocess(image, rects, t.model_input, t.mean, t.std)


def synth_images(family: str, seeds: Iterable[int], size: tuple[int, int]) -> list[np.ndarray]:
    return [render_part(family, s, size)[0] for s in seeds]


def fit_model(recipe: Recipe, good: list[np.ndarray]) -> LocalStatsAnomaly:
    tiles = np.concatenate([recipe_tiles(img, recipe)[1] for img in good])
    mean, inv_cov = fit_gaussian(tiles)
    return LocalStatsAnomaly(mean, inv_cov).eval()


def export_onnx(model: LocalStatsAnomaly, tile: int, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, tile, tile, dtype=torch.float16)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=["tiles"],
        output_names=["anomaly_map", "score"],
        dynamic_axes={"tiles": {0: "batch"}, "anomaly_map": {0: "batch"}, "score": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    return path


class OnnxRunner:
    """In-process onnxruntime: the offline path (fit, calibrate, inspect) with no server."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, tiles: np.ndarray, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
        maps, scores = [], []
        for i in range(0, len(tiles), batch):
            m, s = self.session.run(["anomaly_map", "score"], {"tiles": tiles[i : i + batch]})
            maps.append(m)
            scores.append(s)
        return np.concatenate(maps), np.concatenate(scores)


def frame_map(image: np.ndarray, recipe: Recipe, runner: OnnxRunner) -> np.ndarray:
    rects, tiles = recipe_tiles(image, recipe)
    maps, _ = runner(tiles)
    h, w = image.shape[:2]
    return stitch((w, h), list(zip(rects, maps, strict=True)), recipe.tiling.stitch)


def calibrate_max_normal(
    recipe: Recipe, runner: OnnxRunner, val_good: list[np.ndarray], margin: float = 1.05
) -> Thresholds:
    """Threshold = margin x the highest image score of held-out good parts (Luo et al. 2022,
    'maximum of normal validation scores'); scores between that maximum and the
    threshold are REVIEW."""
    scores = np.array([float(frame_map(img, recipe, runner).max()) for img in val_good])
    top = float(scores.max())
    return Thresholds(
        pixel=top * margin,
        image=top * margin,
        review_low=top,
        min_defect_area_px=recipe.thresholds.min_defect_area_px,
        method=f"max of {len(scores)} good validation scores x {margin}",
    )
