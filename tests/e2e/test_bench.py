"""`defectflow bench` at the smallest size: proves the benchmark runs end to end and that
its figures come from real work (frames stored, Triton answered, stamps read back).
The figures themselves are printed by `make bench`, not checked here."""

from __future__ import annotations

import math

import pytest

from models.prepare import DEFAULT_RECIPE
from services.bench.logic import tiles_per_frame
from services.bench.report import format_report
from services.bench.run import BenchConfig, run
from services.common.recipes import load_recipe

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TINY = BenchConfig(
    seconds=2.5,
    warmup_s=1.5,
    triton_seconds=1.5,
    lines=1,
    cameras_per_line=2,
    width=256,
    height=256,
    overload=0.3,  # a tiny run proves the path, it does not saturate (no long drain)
    ramp_steps=1,
    loads=(0.5,),
    replicas=(1,),
    drain_timeout_s=40.0,
)


def test_bench_runs_at_the_smallest_size(stack):
    res = run(stack, TINY)
    print("\n" + format_report(res))
    t = load_recipe(DEFAULT_RECIPE).tiling
    assert res.tiles_per_frame == tiles_per_frame(256, 256, t.tile_size, t.overlap)
    assert res.triton is not None and res.triton.requests > 0 and res.triton.tiles_s > 0
    assert res.triton_single is not None and res.triton_single.batch_latency_s["p99"] > 0
    names = [lv.name for lv in res.levels]
    assert names == ["overload probe", "saturation", "50% load"]
    for lv in res.levels:
        assert lv.drained, f"{lv.name}: accepted frames never all reached the store"
        assert lv.accepted_frames > 0
        assert lv.stored_frames_s > 0, f"{lv.name}: nothing stored inside the window"
        assert lv.latency_frames > 0 and not math.isnan(lv.latency_s["p99"])
        assert lv.latency_s["p50"] <= lv.latency_s["p99"]
        stages = {(r["stage"], r["phase"]) for r in lv.stages}
        assert {("tiling", "process"), ("inference", "process"), ("store", "queue+write")} <= stages
        assert lv.cpu["inference"] > 0 and lv.cpu["tritonserver"] > 0
    assert not stack.services, "the benchmark leaves no service running"
