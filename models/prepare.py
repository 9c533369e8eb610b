"""One call that makes a working directory ready to inspect: fit, export, calibrate, build.

Used by `defectflow fit`, `defectflow up`, the test fixtures and the benchmarks,
so the demo and the tests serve exactly the same artefacts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

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
    repository: Path


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
    """Fit the anomaly model for `template` on generated good parts of `family`, export it
    to ONNX, calibrate thresholds on held-out good parts, and build the Triton repository."""
    recipe = load_recipe(template)
    onnx_path = workdir / "models" / recipe.model.name / "1" / "model.onnx"
    recipe_path = workdir / "recipes" / f"{recipe.id}.yaml"
    repository = workdir / "repository" / target
    if force or not onnx_path.exists() or not recipe_path.exists():
        log.info("fitting %s on %d good %s parts", recipe.model.name, n_train, family)
        model = train.fit_model(recipe, train.synth_images(family, range(n_train), size))
        train.export_onnx(model, recipe.tiling.model_input, onnx_path)
        runner = train.OnnxRunner(onnx_path)
        val = train.synth_images(family, range(10_000, 10_000 + n_val), size)
        thresholds = train.calibrate_max_normal(recipe, runner, val)
        save_recipe(recipe.model_copy(update={"thresholds": thresholds}), recipe_path)
    calibrated = load_recipe(recipe_path)
    spec = anomaly_spec(calibrated.model.name, calibrated.tiling.model_input)
    build_repository([(spec, onnx_path, 1)], target, repository)
    return Prepared(calibrated, recipe_path, onnx_path, repository)
