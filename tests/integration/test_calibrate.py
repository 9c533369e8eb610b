"""`defectflow calibrate` on good parts only: the false-reject rate it states holds on
fresh good parts, and the thresholds land in the recipe, not in the model."""

import shutil

import cv2
import pytest
import yaml
from scipy.stats import binom
from typer.testing import CliRunner

from services.cli.main import app
from services.common import drift
from services.common.recipes import load_recipe
from services.common.synthetic import render_part
from services.offline.inspect import Inspector

pytestmark = pytest.mark.integration

SIZE = (256, 256)  # 9 tiles per part keeps 200+ parts to seconds; the model is tile-based


def write_parts(folder, seeds, **kw):
    folder.mkdir(parents=True)
    for s in seeds:
        cv2.imwrite(str(folder / f"{s}.png"), render_part("brushed_metal", s, SIZE, **kw)[0])


def test_calibrated_threshold_keeps_its_false_reject_bound_on_fresh_good_parts(prepared, tmp_path):
    recipe = tmp_path / "brushed-metal.yaml"
    shutil.copy(prepared.recipe_path, recipe)
    onnx_before = prepared.onnx_path.read_bytes()
    write_parts(tmp_path / "good", range(50_000, 50_060))
    write_parts(tmp_path / "defects", range(60_000, 60_010), defect_type="hole")
    res = CliRunner().invoke(
        app,
        [
            "calibrate",
            "--recipe",
            str(recipe),
            "--good",
            str(tmp_path / "good"),
            "--defects",
            str(tmp_path / "defects"),
            "--target-frr",
            "0.05",
            "--models",
            str(prepared.onnx_path.parents[2]),
        ],
    )
    assert res.exit_code == 0, res.output
    cal = load_recipe(recipe)
    t = cal.thresholds
    assert cal.version == prepared.recipe.version + 1
    assert t.method.startswith("target FRR 0.05") and t.frr_bound <= 0.05
    assert (tmp_path / "brushed-metal-calibration" / "scores.png").stat().st_size > 1000
    assert "escape rate" in res.output
    assert prepared.onnx_path.read_bytes() == onnx_before  # nothing baked into the model
    assert yaml.safe_load(recipe.read_text())["thresholds"]["image"] == pytest.approx(t.image)
    # the good parts' scores are kept beside the recipe as the score-drift reference
    ref = drift.Reference.load(drift.reference_path(tmp_path, cal.id))
    assert ref.recipe_version == cal.version and len(ref.scores) == 60

    # fresh good parts: the observed rejects must be plausible under FRR <= bound
    inspector = Inspector(cal, prepared.onnx_path)
    fresh = [render_part("brushed_metal", s, SIZE)[0] for s in range(70_000, 70_150)]
    rejected = sum(inspector.inspect(img).decision.score >= t.image for img in fresh)
    p_value = binom.sf(rejected - 1, len(fresh), t.frr_bound)  # P(X >= rejected | FRR = bound)
    assert p_value > 0.01, f"{rejected}/150 fresh good parts rejected; bound {t.frr_bound:.3f}"
