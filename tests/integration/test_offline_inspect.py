"""`defectflow inspect`: a folder in, results.jsonl in the public format out, no servers."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from models.data.mvtec import SynthPlan, write_synthetic
from services.cli.main import app

pytestmark = pytest.mark.integration

KEYS = {"image", "score", "verdict", "defects", "anomaly_map"}


def test_inspect_writes_one_line_per_image_in_the_public_format(prepared, tmp_path):
    plan = SynthPlan(
        "brushed_metal",
        (512, 512),
        train_good=0,
        test_good=3,
        test_per_type=1,
        seed=5,
        types=("scratch", "hole", "crack"),
    )
    write_synthetic(tmp_path / "data", plan)
    folder = tmp_path / "data" / "brushed_metal" / "test"
    (folder / "good" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "inspect",
            str(folder),
            "--recipe",
            str(prepared.recipe_path),
            "--out",
            str(out),
            "--models",
            str(prepared.onnx_path.parents[2]),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = {
        r["image"]: r for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    assert len(rows) == 3 + 3 + 1  # every file has a line, the unreadable one too
    broken = rows.pop("good/broken.png")
    assert broken["verdict"] == "REVIEW" and "cannot decode" in broken["error"]
    for name, row in rows.items():
        assert set(row) == KEYS, name
        assert row["verdict"] in {"OK", "NG", "REVIEW"}
        amap = np.load(out / row["anomaly_map"])
        assert amap.shape == (512, 512) and amap.dtype == np.float16
        assert row["score"] == pytest.approx(float(amap.max()), rel=1e-2)
        for d in row["defects"]:
            assert set(d) == {"class", "score", "box"} and len(d["box"]) == 4
    for kind in ("scratch", "hole", "crack"):  # obvious defects (k=0 is obvious)
        row = rows[f"{kind}/000.png"]
        assert row["verdict"] == "NG" and row["defects"], row
    assert all(rows[f"good/{i:03d}.png"]["verdict"] != "NG" for i in range(3))


def test_inspect_names_the_missing_model(prepared, tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "inspect",
            str(tmp_path),
            "--recipe",
            str(prepared.recipe_path),
            "--out",
            str(tmp_path / "o"),
            "--models",
            str(tmp_path / "nowhere"),
        ],
    )
    assert res.exit_code != 0 and "defectflow fit" in str(res.exception)
