"""Fit, export and calibrate a recipe's anomaly model on good parts only.

Fitting and calibration run the exact tiling and stitching code the services
run (factories rarely have defect samples on day one, so nothing here needs one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from models.anomaly.local_stats import LocalStatsAnomaly, fit_gaussian
from models.anomaly.patchcore import PatchCore, fit_patchcore
from models.synth.parts import render_part
from services.common.domain import Rect
from services.common.recipes import Recipe
from services.tiling.logic import clip_roi, preprocess, tile_grid

OPSET = 17
Progress = Callable[[int, int], None]


def recipe_tiles(image: np.ndarray, recipe: Recipe):
    h, w = image.shape[:2]
    roi = recipe.roi
    rect = clip_roi(Rect(roi.x, roi.y, roi.width, roi.height) if roi else None, w, h)
    rects = tile_grid(rect, recipe.tiling.tile_size, recipe.tiling.overlap)
    t = recipe.tiling
    return rects, preprocess(image, rects, t.model_input, t.mean, t.std)


def synth_images(family: str, seeds: Iterable[int], size: tuple[int, int]) -> list[np.ndarray]:
    return [render_part(family, s, size)[0] for s in seeds]


def fit_model(
    recipe: Recipe, good: list[np.ndarray], progress: Progress | None = None
) -> nn.Module:
    """The recipe's anomaly model fitted on good images (torch, eval mode)."""
    if not good:
        raise ValueError("fitting needs at least one good image")
    tiles = np.concatenate([recipe_tiles(img, recipe)[1] for img in good])
    if recipe.fit.arch == "local_stats":
        mean, inv_cov = fit_gaussian(tiles)
        return LocalStatsAnomaly(mean, inv_cov).eval()
    return fit_patchcore(
        tiles,
        recipe.tiling.model_input,
        bank_size=recipe.fit.bank_size,
        seed=recipe.fit.seed,
        progress=progress,
    )


def save_torch(model: nn.Module, path: Path) -> Path:
    """The fitted state beside the ONNX file, so parity tests compare the very same model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PatchCore):
        torch.save({"arch": "patchcore_lite0", "bank": model.bank, "tile": model.tile}, path)
    else:
        torch.save({"arch": "local_stats", "mean": model.mean, "inv_cov": model.inv_cov}, path)
    return path


def load_torch(path: Path) -> nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["arch"] == "patchcore_lite0":
        return PatchCore(state["bank"], int(state["tile"])).eval()
    return LocalStatsAnomaly(state["mean"].flatten().numpy(), state["inv_cov"].numpy()).eval()


def export_onnx(model: nn.Module, tile: int, path: Path) -> Path:
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

    def __init__(self, path: Path, threads: int = 0) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads  # 0: onnxruntime picks (all cores)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input = self.session.get_inputs()[0].name

    def run(self, tiles: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for i in range(0, len(tiles), batch):
            outs = self.session.run(self.outputs, {self.input: tiles[i : i + batch]})
            for name, out in zip(self.outputs, outs, strict=True):
                parts[name].append(out)
        return {name: np.concatenate(p) for name, p in parts.items()}

    def __call__(self, tiles: np.ndarray, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
        out = self.run(tiles, batch)
        return out["anomaly_map"], out["score"]
