"""The pipeline's anomaly model alone on a GPU (torch eager): tiles/s and batch latency by
batch size, the figure that sizes a GPU node (docs/benchmarks.md, "GPU").

Run: `python tests/bench/bench_gpu_model.py WORKDIR/models/anomaly_brushed_metal/1/model.pt`
(the `model.pt` that `defectflow bench` or `defectflow up` fitted). Under pytest it skips
where there is no CUDA device.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def run(model_pt: Path, batches=(16, 64, 256), seconds: float = 6.0) -> list[dict]:
    import torch

    from models.anomaly.train import load_torch

    dev = torch.device("cuda")
    model = load_torch(model_pt).to(dev)
    tile = model.tile + 2 * model.context  # the tile's window
    rng = np.random.default_rng(0)
    out = []
    for autocast in (False, True):
        for batch in batches:
            tiles = rng.standard_normal((batch, 3, tile, tile)).astype(np.float16)
            host = torch.from_numpy(tiles).pin_memory()

            def step(host=host, autocast=autocast) -> None:  # type: ignore[no-untyped-def]
                x = host.to(dev, non_blocking=True)
                with torch.inference_mode(), torch.autocast("cuda", torch.float16, autocast):
                    m, s = model(x)
                m.half().cpu(), s.float().cpu()  # answers back on the host, as Triton sends them

            for _ in range(5):
                step()
            lat = []
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                a = time.perf_counter()
                step()
                lat.append(time.perf_counter() - a)
            elapsed = time.perf_counter() - t0
            out.append(
                {
                    "gpu": torch.cuda.get_device_name(0),
                    "compute": "fp16 autocast" if autocast else "fp32",
                    "batch": batch,
                    "tiles_s": round(len(lat) * batch / elapsed, 1),
                    "batch_p50_ms": round(1000 * float(np.percentile(lat, 50)), 2),
                    "batch_p99_ms": round(1000 * float(np.percentile(lat, 99)), 2),
                }
            )
    return out


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="no CUDA device here")
def test_model_alone_on_the_gpu(prepared):
    for row in run(prepared.torch_path, seconds=3.0):
        print(json.dumps(row))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_pt", type=Path)
    ap.add_argument("--seconds", type=float, default=6.0)
    for row in run(ap.parse_args().model_pt, seconds=ap.parse_args().seconds):
        print(json.dumps(row))
