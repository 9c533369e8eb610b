"""Changeover: a line switches recipe while frames flow; the next frame it captures uses
the new recipe, no service restarts, no frame is lost or recorded twice."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from services.common.recipes import load_recipe, save_recipe
from tests.e2e.test_pipeline import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FRAMES = 40


def test_changeover_takes_effect_on_the_next_frame_without_restart(stack, tmp_path):
    base = load_recipe(stack.prepared.recipe_path)
    other = base.model_copy(update={"id": "brushed-metal-b", "version": 7})
    save_recipe(other, stack.prepared.recipe_path.parent / "brushed-metal-b.yaml")
    lines = tmp_path / "lines.yaml"
    lines.write_text(f"line-1: {base.id}\n")
    truth_path = tmp_path / "truth.jsonl"
    if "tiling" not in stack.services:
        stack.start_pipeline()
    pids = {name: p.proc.pid for name, p in stack.services.items()}
    ingest = stack.start_service(
        "ingest",
        {
            "lines": "1",
            "cameras_per_line": "1",
            "fps": "4",
            "frames": str(FRAMES),
            "line_recipes_path": str(lines),
            "ground_truth_path": str(truth_path),
            "spool_dir": str(tmp_path / "spool"),
            "seed": "11",
        },
        replica=9,
    )

    def accepted() -> int:
        return sum(1 for _ in truth_path.open()) if truth_path.exists() else 0

    wait_for(lambda: accepted() >= 12, 60, "12 frames accepted before the changeover")
    before = time.time_ns()
    lines.write_text(f"line-1: {other.id}\n")
    after = time.time_ns()
    ingest.proc.wait(timeout=120)
    assert ingest.proc.returncode == 0, f"ingest failed, see {ingest.log_path}"
    truth = [json.loads(t)["frame_id"] for t in truth_path.read_text().splitlines()]
    assert len(truth) == FRAMES
    engine = sa.create_engine(stack.postgres.url)

    def stored():
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "select frame_id, recipe_id, recipe_version, captured_unix_ns "
                    "from inspections where frame_id = any(:ids) order by captured_unix_ns"
                ),
                {"ids": truth},
            ).all()
        return rows if len(rows) >= FRAMES else None

    rows = wait_for(stored, 120, f"{FRAMES} inspections")
    assert sorted(r.frame_id for r in rows) == sorted(truth), "every frame, exactly once"
    recipes = [r.recipe_id for r in rows]
    first_b = recipes.index(other.id)
    assert set(recipes[:first_b]) == {base.id} and set(recipes[first_b:]) == {other.id}
    assert all(r.recipe_id == base.id for r in rows if r.captured_unix_ns < before)
    assert all(r.recipe_id == other.id for r in rows if r.captured_unix_ns > after)
    assert first_b >= 12 and FRAMES - first_b >= 10
    assert {r.recipe_version for r in rows if r.recipe_id == other.id} == {7}
    # no service was restarted to make it happen
    assert all(stack.services[name].proc.pid == pid for name, pid in pids.items())
