"""`defectflow fit` with candidate settings keeps the one that separates held-out good
parts from defective ones, and says why."""

from __future__ import annotations

import pytest

from models.prepare import fit_from_images
from services.common.recipes import Candidate, Fit, Recipe, Thresholds, Tiling, load_recipe
from services.common.synthetic import render_part

pytestmark = pytest.mark.slow


def test_fit_keeps_the_candidate_that_sees_the_defects(tmp_path):
    size = (192, 192)
    good = [render_part("brushed_metal", s, size)[0] for s in range(6)]
    val = [render_part("brushed_metal", 100 + s, size)[0] for s in range(4)]
    recipe = Recipe(
        id="choice",
        version=1,
        tiling=Tiling(
            tile_size=96, overlap=0, model_input=96, context=16, mean=(0.5,) * 3, std=(0.5,) * 3
        ),
        model={"name": "anomaly_choice"},
        fit=Fit(
            bank_size=256,
            candidates=(
                # a model that sees the tile at 1/6 of its resolution cannot see a 3 px spot
                Candidate(label="coarse", set={"tiling.model_input": 16, "tiling.context": 0}),
                Candidate(label="full", set={"tiling.model_input": 96}),
            ),
        ),
        thresholds=Thresholds(pixel=1, image=1, review_low=1),
    )
    calibrated = fit_from_images(recipe, good, val, tmp_path)
    report = (tmp_path / "recipes" / "choice-fit.md").read_text()
    assert "| full (chosen) |" in report
    assert calibrated.tiling.model_input == 96
    assert load_recipe(tmp_path / "recipes" / "choice.yaml").tiling.model_input == 96
    assert not (tmp_path / "candidates").exists()
