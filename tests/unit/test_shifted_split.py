"""The shifted nuisance profile: wider than the line's, deterministic, and the line
profile renders the very bytes it rendered before profiles existed."""

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from models.data.mvtec import SynthPlan, load_family, read_image, split, write_synthetic
from services.cli.main import app
from services.common.synthetic import LINE, SHIFTED, _print, render_part

# sha256 of render_part(...)[0].tobytes(), computed with the generator before it had
# nuisance profiles; fixtures, the demo and the published figures depend on these bytes
PINNED = {
    ("printed_pattern", 7, (160, 160), None, "obvious"): (
        "cdcbef54d7a070c2985a6f6e47be7e91a20a760dabd587da8152778b3f172f58"
    ),
    ("brushed_metal", 3, (192, 160), "scratch", "subtle"): (
        "9621ddf2e2a719ec070f5b8bafc0d318b2f23cc314536584fede0a146920df7b"
    ),
}


def sha(image: np.ndarray) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.mark.parametrize("args", list(PINNED))
def test_line_profile_renders_the_bytes_it_always_did(args):
    default, truth = render_part(*args)
    line, line_truth = render_part(*args, nuisance="line")
    assert sha(default) == PINNED[args]
    assert np.array_equal(default, line)
    assert np.array_equal(truth.mask, line_truth.mask) and truth.box == line_truth.box


def test_shifted_is_deterministic_and_not_the_line_image():
    for fam in ("brushed_metal", "woven_fabric", "printed_pattern"):
        a, ta = render_part(fam, 21, (160, 160), "spot", nuisance="shifted")
        b, tb = render_part(fam, 21, (160, 160), "spot", nuisance=SHIFTED)
        assert np.array_equal(a, b) and np.array_equal(ta.mask, tb.mask)
        line, _ = render_part(fam, 21, (160, 160), "spot")
        assert np.abs(a.astype(np.int16) - line.astype(np.int16)).mean() > 2.0, fam


def test_unknown_profile_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="line, shifted"):
        render_part("brushed_metal", 1, (160, 160), nuisance="clean")


def channel_ratios(nuisance: str) -> np.ndarray:
    """(G/B, R/B) of the mean colour of 12 good parts."""
    means = np.array(
        [
            render_part("woven_fabric", s, (160, 160), nuisance=nuisance)[0].reshape(-1, 3).mean(0)
            for s in range(12)
        ]
    )
    return means[:, 1:] / means[:, :1], means.mean(1)


def test_shifted_light_drifts_in_colour_and_brightness_where_the_line_does_not():
    line_ratio, line_level = channel_ratios("line")
    shifted_ratio, shifted_level = channel_ratios("shifted")
    # the line is one grey image times one fixed tint: channel ratios are constant
    assert line_ratio.std(0).max() < 0.003
    assert shifted_ratio.std(0).min() > 0.02
    # and its brightness spreads wider than the line's (gain, gradient, vignetting)
    assert shifted_level.std() > 1.5 * line_level.std()


def test_shifted_print_is_misregistered_and_its_ink_varies():
    def first_dot(nz, seed):
        layer = _print(np.random.default_rng(seed), 64, 64, nz)
        ys, xs = np.nonzero(layer[:40, :40] < 125)
        return (round(xs.mean()), round(ys.mean())), float(layer.min())

    assert {first_dot(LINE, s) for s in range(8)} == {((16, 16), 80.0)}
    dots = [first_dot(SHIFTED, s) for s in range(16)]
    centres = {c for c, _ in dots}
    inks = [v for _, v in dots]
    assert len(centres) > 4
    assert all(13 <= x <= 19 and 13 <= y <= 19 for x, y in centres)
    assert max(inks) - min(inks) > 5.0 and min(inks) >= 170 - 99 and max(inks) <= 170 - 81


def test_plan_renders_train_and_test_under_their_own_profiles(tmp_path):
    plan = SynthPlan(
        "printed_pattern", (160, 160), 2, 1, 1, seed=8, types=("hole",), test_nuisance="shifted"
    )
    samples = write_synthetic(tmp_path, plan)
    seeds = plan.seeds()
    by_rel = {s.rel: s for s in samples}
    train0 = read_image(by_rel["train/good/000.png"])
    test0 = read_image(by_rel["test/good/000.png"])
    hole0 = read_image(by_rel["test/hole/000.png"])
    first_train, first_test = seeds["train"][0], seeds["test_good"][0]
    assert np.array_equal(train0, render_part("printed_pattern", first_train, (160, 160))[0])
    shifted = render_part("printed_pattern", first_test, (160, 160), nuisance="shifted")[0]
    assert np.array_equal(test0, shifted)
    hole = render_part(
        "printed_pattern", seeds["test_defect"][0], (160, 160), "hole", "obvious", "shifted"
    )[0]
    assert np.array_equal(hole0, hole)
    rows = [json.loads(x) for x in (tmp_path / "printed_pattern" / "annotations.jsonl").open()]
    assert {r["image"]: r["nuisance"] for r in rows} == {
        "train/good/000.png": "line",
        "train/good/001.png": "line",
        "test/good/000.png": "shifted",
        "test/hole/000.png": "shifted",
    }
    assert {s.nuisance for s in split(load_family(tmp_path / "printed_pattern"), "test")} == {
        "shifted"
    }


def test_plan_test_profile_defaults_to_the_train_profile_and_names_are_checked():
    assert SynthPlan("woven_fabric", nuisance="shifted").profile("test") == "shifted"
    assert SynthPlan("woven_fabric").profile("test") == "line"
    with pytest.raises(ValueError, match="test_nuisance 'wide'.*line, shifted"):
        SynthPlan("woven_fabric", test_nuisance="wide")


def test_cli_takes_the_profiles_and_refuses_an_unknown_one(tmp_path):
    base = ["data", "synth", "--family", "brushed_metal", "--size", "160"]
    counts = ["--train-good", "1", "--test-good", "1", "--test-per-type", "0"]
    res = CliRunner().invoke(app, [*base, *counts, "--out", str(tmp_path), "--nuisance", "hazy"])
    assert res.exit_code != 0 and "hazy" in res.output and "shifted" in res.output
    res = CliRunner().invoke(
        app, [*base, *counts, "--out", str(tmp_path), "--test-nuisance", "shifted"]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (tmp_path / "brushed_metal" / "annotations.jsonl").open()]
    assert [(r["image"], r["nuisance"]) for r in rows] == [
        ("train/good/000.png", "line"),
        ("test/good/000.png", "shifted"),
    ]


def fake_report(image_auroc: float, frr: float, by_type: dict) -> dict:
    return {
        "image_auroc": image_auroc,
        "pixel_auroc": 0.9,
        "aupro_0.3": 0.8,
        "image_auroc_obvious": 0.99,
        "image_auroc_subtle": 0.6,
        "image_auroc_by_type": by_type,
        "false_reject_rate": frr,
        "escape_rate": 0.25,
        "threshold": {"image": 12.5},
    }


def test_report_sets_the_product_beside_the_baseline_and_prints_the_margin():
    from models.eval.accuracy import Counts, margin, render_data, render_split

    shifted = {
        "brushed_metal": {
            "product": fake_report(0.9, 0.0, {"hole": 1.0}),
            "baseline": fake_report(0.8, 0.1, {"hole": 0.9}),
            "seconds": {"product fit": 40.0, "stock fit": 12.0},
        },
        "printed_pattern": {
            "product": fake_report(0.7, 0.05, {"hole": 0.8, "missing_feature": 0.6}),
            "baseline": fake_report(0.75, 0.2, {"hole": 0.7, "missing_feature": 0.9}),
            "seconds": {"product fit": 80.0, "stock fit": 12.0},
        },
    }
    assert margin(shifted) == pytest.approx(0.025)
    text = render_split("shifted", shifted, Counts(8, 4, 2), 8)
    assert "margin over the stock baseline: +0.025 mean image AUROC" in text
    assert "(product 0.800, stock baseline 0.775;" in text
    header = next(line for line in text.splitlines() if line.startswith("| metric"))
    assert header == (
        "| metric | brushed_metal product | brushed_metal stock | printed_pattern product "
        "| printed_pattern stock | mean product | mean stock |"
    )
    rows = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert rows["| image AUROC"].endswith("| 0.900 | 0.800 | 0.700 | 0.750 | 0.800 | 0.775 |")
    assert rows["| false-reject rate (good → NG)"].endswith(
        "| 0.000 | 0.100 | 0.050 | 0.200 | 0.025 | 0.150 |"
    )
    # a type one family lacks is a dash there, and its mean is over the families that have it
    assert rows["| image AUROC, missing_feature"].endswith(
        "| – | – | 0.600 | 0.900 | 0.600 | 0.900 |"
    )
    assert "seed block 8" in text.lower()
    data = render_data(Counts(8, 4, 2), 8, ("shifted",))
    assert "--seed 8" in data and "trial block" in data and "±3° rotation" in data


def test_accuracy_refuses_an_unknown_split_before_doing_any_work(tmp_path):
    res = CliRunner().invoke(
        app, ["accuracy", "--workdir", str(tmp_path / "w"), "--splits", "wide"]
    )
    assert res.exit_code != 0 and "'wide'" in res.output and "both" in res.output
    assert not (tmp_path / "w").exists()
