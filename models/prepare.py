"""One call that makes a working directory ready to inspect: fit, export, calibrate, build.

Used by `defectflow fit`, `defectflow up`, the test fixtures and the benchmarks,
so the demo and the tests serve exactly the same artefacts.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.anomaly import choose, train
from models.anomaly.augment import with_drift
from models.calibrate import calibrate, record_drift_reference, scores_and_maps
from models.supervised import train as sup
from models.triton.build import ModelSpec, anomaly_spec, build_repository, defects_spec
from services.common.recipes import Recipe, load_recipe, save_recipe, with_settings
from services.common.thresholds import MaxNormal
from services.offline.inspect import Inspector

log = logging.getLogger("defectflow.models")
# photometric-drift copies of each held-out part that calibration also scores
CALIBRATION_DRIFT_COPIES = 2

TEMPLATES = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = TEMPLATES / "brushed-metal.yaml"
DEFECTS_MODEL = "defects"
# what `defectflow up` and the test session train when no DefectNet exists yet: enough
# for the serving path and parity checks in about a minute; `defectflow train` trains the
# full model whose accuracy docs/accuracy.md reports
QUICK_DEFECTS = sup.TrainConfig(per_type=4, good_per_family=6, epochs=12)


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
    defects: list[np.ndarray] | None = None,
) -> Recipe:
    """Fit on `good`, export ONNX, calibrate thresholds on held-out `val`; returns the
    calibrated recipe (also written to workdir/recipes/<id>.yaml). A recipe with candidate
    settings is fitted once per candidate and the one that best separates held-out good
    parts from defective ones (`defects`, else synthetic) is kept; the choice and why are
    written to workdir/recipes/<id>-fit.md."""
    if not val:
        raise ValueError("calibration needs held-out good images (none given)")
    onnx_path, torch_path, recipe_path = model_paths(workdir, recipe)
    if recipe.fit.candidates:
        recipe, model = choose_settings(recipe, good, val, defects or [], workdir, progress)
    else:
        log.info("fitting %s (%s) on %d good images", recipe.model.name, recipe.fit.arch, len(good))
        recipe = train.with_fitted_preprocess(recipe, good)
        model = train.fit_model(recipe, good, progress)
    train.save_torch(model, torch_path)
    train.export_onnx(model, recipe.tiling.input_size, onnx_path)
    # few held-out parts at fit time: the maximum x 1.05, review band up to the maximum;
    # `defectflow calibrate` re-chooses with more parts (target false-reject rate). The
    # held-out parts are scored as they are and with the focus and noise a line drifts
    # by (docs/accuracy-steps.md): a threshold from a few sharp parts alone rejects good
    # parts once the lens or the sensor drifts.
    inspector = Inspector(recipe, onnx_path)
    held_out = with_drift(val, CALIBRATION_DRIFT_COPIES, recipe.fit.seed + 1)
    cal = calibrate(
        inspector, held_out, [], MaxNormal(1.05), review_margin=1 - 1 / 1.05, bump_version=False
    )
    save_recipe(cal.recipe, recipe_path)
    record_drift_reference(cal, recipe_path.parent)
    return cal.recipe


def choose_settings(
    recipe: Recipe,
    good: list[np.ndarray],
    val: list[np.ndarray],
    defects: list[np.ndarray],
    workdir: Path,
    progress: train.Progress | None = None,
) -> tuple[Recipe, torch.nn.Module]:
    """Fit every candidate of the recipe; the chosen recipe and its fitted model."""
    bad = choose.pseudo_defects(val, recipe) + list(defects)
    trials, models = [], {}
    scratch = workdir / "candidates"
    for cand in recipe.fit.candidates:
        t0 = time.perf_counter()
        r = train.with_fitted_preprocess(with_settings(recipe, cand.set), good)
        log.info("fit candidate %r: %s", cand.label, cand.set)
        model = train.fit_model(r, good, progress)
        path = train.export_onnx(model, r.tiling.input_size, scratch / cand.label / "model.onnx")
        inspector = Inspector(r, path)
        good_scores, _ = scores_and_maps(inspector, val)
        bad_scores, _ = scores_and_maps(inspector, bad)
        trials.append(
            choose.Trial(
                cand.label,
                r,
                choose.separation(good_scores, bad_scores),
                float(good_scores.max()),
                time.perf_counter() - t0,
            )
        )
        models[cand.label] = model
    chosen = choose.pick(trials)
    text = choose.report(trials, chosen, len(val), len(bad))
    (workdir / "recipes").mkdir(parents=True, exist_ok=True)
    (workdir / "recipes" / f"{recipe.id}-fit.md").write_text(text)
    log.info("chose %r\n%s", chosen.label, text)
    shutil.rmtree(scratch, ignore_errors=True)
    return chosen.recipe, models[chosen.label]


# generated good parts: to fit the anomaly model on, and (disjoint) to calibrate its
# thresholds on; the demo, the tests and `defectflow fit` without --good all use these
FIT_PARTS = 20
CALIBRATION_PARTS = 60


def synth_fit_sets(
    family: str,
    n_train: int = FIT_PARTS,
    n_val: int = CALIBRATION_PARTS,
    size: tuple[int, int] = (512, 512),
) -> tuple[list, list]:
    """Generated good parts to fit on and, from a disjoint seed range, to calibrate on."""
    good = train.synth_images(family, range(n_train), size)
    val = train.synth_images(family, range(10_000, 10_000 + n_val), size)
    return good, val


def fit_recipe(
    template: Path,
    family: str,
    workdir: Path,
    n_train: int = FIT_PARTS,
    n_val: int = CALIBRATION_PARTS,
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
        fit_from_images(recipe, *synth_fit_sets(family, n_train, n_val, size), workdir)
    calibrated = load_recipe(recipe_path)
    prepare_defects(workdir, QUICK_DEFECTS)
    repository = build_for(calibrated, onnx_path, workdir / "repository" / target, target)
    return Prepared(calibrated, recipe_path, onnx_path, torch_path, repository)


def defects_paths(workdir: Path) -> tuple[Path, Path]:
    d = workdir / "models" / DEFECTS_MODEL / "1"
    return d / "model.onnx", d / "model.pt"


def prepare_defects(
    workdir: Path, cfg: sup.TrainConfig, force: bool = False, echo=log.info
) -> tuple[Path, dict[str, float]]:
    """Train DefectNet's heads (unless already there) and export them; returns the ONNX path."""
    onnx_path, pt_path = defects_paths(workdir)
    stats: dict[str, float] = {}
    if force or not (onnx_path.exists() and pt_path.exists()):
        heads, stats = sup.train_heads(cfg, echo)
        sup.save(heads, cfg, pt_path)
        sup.export_onnx(sup.load(pt_path), onnx_path)
    return onnx_path, stats


def build_for(recipe: Recipe, onnx_path: Path, out: Path, target: str) -> Path:
    """The Triton repository for `target`: the recipe's anomaly model, plus DefectNet when
    the working directory holds one."""
    models: list[tuple[ModelSpec, Path, int]] = [
        (
            anomaly_spec(recipe.model.name, recipe.tiling.model_input, recipe.tiling.input_size),
            onnx_path,
            1,
        )
    ]
    workdir = onnx_path.parents[3]
    d_onnx, d_pt = defects_paths(workdir)
    if d_onnx.exists():
        net = sup.load(d_pt)
        spec = defects_spec(DEFECTS_MODEL, net.tile, net.heads.n_classes)
        models.append((spec, d_onnx, 1))
    return build_repository(models, target, out)
