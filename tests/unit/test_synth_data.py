"""`defectflow data synth`: deterministic, MVTec layout, boxes and masks agree."""

import hashlib

import cv2
import numpy as np
from typer.testing import CliRunner

from models.data.mvtec import SynthPlan, load_family, split, write_synthetic
from services.cli.main import app
from services.common.synthetic import render_part


def digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_cli_writes_the_mvtec_layout_and_same_seed_gives_same_bytes(tmp_path):
    args = [
        "data",
        "synth",
        "--family",
        "printed_pattern",
        "--train-good",
        "2",
        "--test-good",
        "1",
        "--test-per-type",
        "2",
        "--size",
        "160",
    ]
    for out in ("a", "b"):
        res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    root = tmp_path / "a" / "printed_pattern"
    assert len(list((root / "train" / "good").glob("*.png"))) == 2
    assert sorted(p.name for p in (root / "test").iterdir()) == sorted(
        ["good", "scratch", "spot", "hole", "contamination", "stain", "crack", "missing_feature"]
    )
    assert (root / "ground_truth" / "scratch" / "000_mask.png").exists()
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_annotations_and_plain_mvtec_reading_agree(tmp_path):
    samples = write_synthetic(tmp_path, SynthPlan("woven_fabric", (160, 160), 1, 1, 2, seed=3))
    (tmp_path / "woven_fabric" / "annotations.jsonl").unlink()  # as a user's own MVTec folder
    plain = {s.rel: s for s in load_family(tmp_path / "woven_fabric")}
    for s in samples:
        p = plain[s.rel]
        assert p.label == s.label and p.mask_rel == s.mask_rel
        if s.defective:
            # the generator's box is the mask's extent; from the mask we get its components
            xs0, ys0, xs1, ys1 = zip(*p.boxes, strict=True)
            assert (min(xs0), min(ys0), max(xs1), max(ys1)) == s.boxes[0]
    assert len(split(list(plain.values()), "test")) == 1 + 6 * 2


def test_seed_blocks_never_share_an_image():
    seeds = SynthPlan("brushed_metal", seed=0).seeds()
    other = SynthPlan("brushed_metal", seed=1).seeds()
    all_ranges = [*seeds.values(), *other.values()]
    flat = [s for r in all_ranges for s in r]
    assert len(flat) == len(set(flat))


def test_subtle_defects_are_fainter_than_obvious_ones():
    for kind in ("scratch", "spot", "stain"):
        good, _ = render_part("brushed_metal", 5, (256, 256))
        contrast = {}
        for severity in ("obvious", "subtle"):
            img, truth = render_part("brushed_metal", 5, (256, 256), kind, severity)
            diff = np.abs(img.astype(np.float32) - good.astype(np.float32))[..., 1]
            contrast[severity] = diff[truth.mask > 0].mean()
        assert contrast["subtle"] < 0.6 * contrast["obvious"], kind


def test_a_missing_printed_dot_leaves_its_place_empty():
    img, truth = render_part("printed_pattern", 11, (256, 256), "missing_feature", "obvious")
    good, _ = render_part("printed_pattern", 11, (256, 256))
    gray_bad = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[truth.mask > 0]
    gray_good = cv2.cvtColor(good, cv2.COLOR_BGR2GRAY)[truth.mask > 0]
    assert gray_good.min() < 110  # a dark dot was there
    assert gray_bad.min() > 120  # and is gone
