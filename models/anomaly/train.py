"""Fit, export and calibrate a recipe's anomaly model on good parts only.

Fitting and calibration run the exact tiling and stitching code the services
run (factories rarely have defect samples on day one, so nothing here needs one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.anomaly.augment import with_nuisance
from models.anomaly.local_stats import LocalStatsAnomaly, fit_gaussian
from models.anomaly.patchcore import PatchCore, fit_patchcore
from services.common import register
from services.common.recipes import Recipe
from services.common.synthetic import render_part
from services.tiling.logic import (
    channel_level,
    condition,
    detail_level,
    recipe_roi,
    recipe_tiles,
)

OPSET = 17
Progress = Callable[[int, int], None]


def synth_images(family: str, seeds: Iterable[int], size: tuple[int, int]) -> list[np.ndarray]:
    return [render_part(family, s, size)[0] for s in seeds]


def with_fitted_preprocess(recipe: Recipe, good: list[np.ndarray]) -> Recipe:
    """The recipe with what its preprocessing needs from the good images: the flat-field
    channel levels, the registration reference, the detail contrast (in the order
    `condition` applies them); what the recipe already records is kept."""
    p = recipe.preprocess
    if not good:
        return recipe

    def upto(**off) -> Recipe:  # the recipe with the later steps switched off
        return recipe.model_copy(update={"preprocess": p.model_copy(update=off)})

    if p.illumination == "flat_field" and p.level is None:
        level = np.mean([channel_level(img, recipe) for img in good], axis=0)
        p = p.model_copy(update={"level": tuple(float(v) for v in level)})
    reg = p.registration
    if reg is not None and reg.reference is None:
        before = upto(registration=None, contrast=False)
        flat = [condition(img, before).image for img in good]
        roi = recipe_roi(before, good[0].shape[1], good[0].shape[0])
        reg = reg.model_copy(update={"reference": register.fit_reference(flat, roi, reg)})
        p = p.model_copy(update={"registration": reg})
    if p.contrast and p.contrast_level is None:
        before = upto(contrast=False)
        contrast = np.mean([detail_level(condition(img, before).image, before) for img in good])
        p = p.model_copy(update={"contrast_level": float(contrast)})
    return recipe.model_copy(update={"preprocess": p})


def fit_model(
    recipe: Recipe, good: list[np.ndarray], progress: Progress | None = None
) -> nn.Module:
    """The recipe's anomaly model fitted on good images (torch, eval mode); the recipe
    must carry its fitted preprocessing (`with_fitted_preprocess`)."""
    if not good:
        raise ValueError("fitting needs at least one good image")
    images = with_nuisance(good, recipe.fit.augment, recipe.fit.seed)
    tiles = np.concatenate([recipe_tiles(img, recipe).tiles for img in images])
    t = recipe.tiling
    if recipe.fit.arch == "local_stats":
        mean, inv_cov = fit_gaussian(tiles)
        return LocalStatsAnomaly(mean, inv_cov, t.context).eval()
    return fit_patchcore(
        tiles,
        t.model_input,
        t.context,
        recipe.fit.stride,
        bank_size=recipe.fit.bank_size,
        seed=recipe.fit.seed,
        progress=progress,
    )


def save_torch(model: nn.Module, path: Path) -> Path:
    """The fitted state beside the ONNX file, so parity tests compare the very same model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PatchCore):
        state = {
            "arch": "patchcore_lite0",
            "bank": model.bank,
            "tile": model.tile,
            "stride": model.stride,
        }
    else:
        state = {"arch": "local_stats", "mean": model.mean, "inv_cov": model.inv_cov}
    torch.save({**state, "context": model.context}, path)
    return path


def load_torch(path: Path) -> nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    context = int(state.get("context", 0))
    if state["arch"] == "patchcore_lite0":
        stride = int(state.get("stride", 8))
        return PatchCore(state["bank"], int(state["tile"]), context, stride).eval()
    mean, inv_cov = state["mean"].flatten().numpy(), state["inv_cov"].numpy()
    return LocalStatsAnomaly(mean, inv_cov, context).eval()


def export_onnx(model: nn.Module, input_size: int, path: Path) -> Path:
    """ONNX with a dynamic batch; `input_size` is the window edge (tile + 2 x context)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, input_size, input_size, dtype=torch.float16)
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
