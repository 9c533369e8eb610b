"""One call that makes a working directory ready to inspect: fit, export, calibrate, build.

Used by `defectflow fit`, `defectflow up`, the test fixtures and the benchmarks,
so the demo and the tests serve exactly the same artefacts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.anomaly import train
from models.triton.build import anomaly_spec, build_repository
from services.common.recipes import Recipe, load_recipe, save_recipe

log = logging.getLogger("defectflow.models")

TEMPLATES = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = TEMPLATES / "brushed-metal.yaml"


@dataclass(frozen=True)
class Prepared:
    recipe: Recipe
    recipe_path: Path
    onnx_path: Path
    torch_path: Path
    repository: Path


def model_paths(workdir: Path, recipe: Recipe) -> tuple[Path, Path, Path]:
    """(onnx, torch state, calibrated recipe) of a recipe's model inside a working directory."""
    model_dir = workdir / "models" / recipe.model.name / "1"
    return (
        model_dir / "model.onnx",
        model_dir / "model.pt",
        workdir / "recipes" / f"{recipe.id}.yaml",
    )


def fit_from_images(
    recipe: Recipe,
    good: list[np.ndarray],
    val: list[np.ndarray],
    workdir: Path,
    progress: train.Progress | None = None,
) -> Recipe:
    """Fit on `good`, export ONNX, calibrate thresholds on held-out `val`; returns the
    calibrated recipe (also written to workdir/recipes/<id>.yaml)."""
    if not val:
        raise ValueError("calibration needs held-out good images (none given)")
    onnx_path, torch_path, recipe_path = model_paths(workdir, recipe)
    log.info("fitting %s (%s) on %d good images", recipe.model.name, recipe.fit.arch, len(good))
    model = train.fit_model(recipe, good, progress)
    train.save_torch(model, torch_path)
    train.export_onnx(model, recipe.tiling.model_input, onnx_path)
    thresholds = train.calibrate_max_normal(recipe, train.OnnxRunner(onnx_path), val)
    calibrated = recipe.model_copy(update={"thresholds": thresholds})
    save_recipe(calibrated, recipe_path)
    return calibrated


def fit_recipe(
    template: Path,
    family: str,
    workdir: Path,
    n_train: int = 20,
    n_val: int = 20,
    size: tuple[int, int] = (512, 512),
    target: str = "cpu",
    force: bool = False,
) -> Prepared:
    """Fit `template`'s model on generated good parts of `family` (seeds disjoint from the
    validation parts), calibrate, and build the Triton repository. Reuses earlier output
    unless `force`."""
    recipe = load_recipe(template)
    onnx_path, torch_path, recipe_path = model_paths(workdir, recipe)
    if force or not (onnx_path.exists() and torch_path.exists() and recipe_path.exists()):
        good = train.synth_images(family, range(n_train), size)
        val = train.synth_images(family, range(10_000, 10_000 + n_val), size)
        fit_from_images(recipe, good, val, workdir)
    calibrated = load_recipe(recipe_path)
    repository = build_for(calibrated, onnx_path, workdir / "repository" / target, target)
    return Prepared(calibrated, recipe_path, onnx_path, torch_path, repository)


def build_for(recipe: Recipe, onnx_path: Path, out: Path, target: str) -> Path:
    spec = anomaly_spec(recipe.model.name, recipe.tiling.model_input)
    return build_repository([(spec, onnx_path, 1)], target, out)
