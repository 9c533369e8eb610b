"""CPU cost per megapixel of frame: the frame conditioning steps and the anomaly model at
the settings a recipe can choose, side by side in one run (onnxruntime, this machine's
cores). The model's cost does not depend on what its bank holds, only on its size, so
the banks here are random and nothing is fitted.

Run: `python tests/bench/bench_model_cost.py` (prints one JSON line per setting).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models.anomaly.patchcore import PatchCore, feature_dim  # noqa: E402
from models.anomaly.train import export_onnx  # noqa: E402
from services.common import register  # noqa: E402
from services.common.domain import Rect  # noqa: E402
from services.common.recipes import (  # noqa: E402
    Preprocess,
    Recipe,
    Registration,
    Roi,
    Thresholds,
    Tiling,
)
from services.common.synthetic import render_part  # noqa: E402
from services.offline.runner import OnnxRunner  # noqa: E402
from services.tiling.logic import condition, recipe_tiles  # noqa: E402

FRAME = 512
# (label, tile, overlap, context, stride, bank): the first is the reference of the ratio
SETTINGS = (
    ("tile 128, no context, stride 8 (before)", 128, 16, 0, 8, 2048),
    ("tile 128, context 32, stride 8", 128, 16, 32, 8, 2048),
    ("tile 256, context 32, stride 8 (shipped)", 256, 0, 32, 8, 2048),
    ("tile 256, context 32, stride 4", 256, 0, 32, 4, 2048),
)


def recipe(tile: int, overlap: int, context: int, pre: Preprocess | None = None) -> Recipe:
    return Recipe(
        id="bench",
        version=1,
        roi=Roi(x=32, y=32, width=FRAME - 64, height=FRAME - 64),
        tiling=Tiling(
            tile_size=tile,
            overlap=overlap,
            model_input=tile,
            context=context,
            mean=(0.5,) * 3,
            std=(0.5,) * 3,
        ),
        preprocess=pre or Preprocess(),
        model={"name": "bench"},
        thresholds=Thresholds(pixel=1, image=1, review_low=1),
    )


def seconds_per_call(fn, repeat: int) -> float:
    fn()
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t0) / repeat


def main() -> None:
    image = render_part("woven_fabric", 1, (FRAME, FRAME))[0]
    mpx = FRAME * FRAME / 1e6
    steps = {
        "blur sigma 2": Preprocess(smooth_sigma=2.0),
        "flat field": Preprocess(illumination="flat_field", level=(120.0,) * 3),
        "detail contrast": Preprocess(contrast=True, contrast_level=20.0),
        "all three (shipped)": Preprocess(
            smooth_sigma=2.0,
            illumination="flat_field",
            level=(120.0,) * 3,
            contrast=True,
            contrast_level=20.0,
        ),
    }
    # registration: the same part, shifted and turned, aligned to a reference of itself
    reg = Registration()
    roi = Rect(32, 32, FRAME - 64, FRAME - 64)
    reg = reg.model_copy(update={"reference": register.fit_reference([image], roi, reg)})
    steps["registration (ECC at 256 px, then the frame warped)"] = Preprocess(registration=reg)
    moved = render_part("woven_fabric", 1, (FRAME, FRAME), nuisance="shifted")[0]
    for name, pre in steps.items():
        r = recipe(256, 0, 32, pre)
        frame = moved if pre.registration else image
        cost = seconds_per_call(lambda r=r, frame=frame: condition(frame, r), 20) / mpx
        print(json.dumps({"conditioning": name, "cpu_ms_per_mpx": round(1e3 * cost, 1)}))
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for label, tile, overlap, context, stride, bank in SETTINGS:
            r = recipe(tile, overlap, context)
            tiles = recipe_tiles(image, r).tiles
            model = PatchCore(torch.randn(bank, feature_dim(stride)), tile, context, stride)
            path = export_onnx(model.eval(), r.tiling.input_size, Path(tmp) / f"{label}.onnx")
            runner = OnnxRunner(path)
            cost = seconds_per_call(lambda runner=runner, tiles=tiles: runner(tiles), 3) / mpx
            base = base or cost
            row = {
                "model": label,
                "tiles_per_frame": len(tiles),
                "cpu_ms_per_mpx": round(1e3 * cost, 1),
                "ratio_to_before": round(cost / base, 2),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
