"""Benchmark arithmetic: tile counts, percentiles, where a frame's time went, sizing."""

from __future__ import annotations

import math

import pytest

from services.bench.logic import (
    StoredFrame,
    frame_spans,
    latencies,
    percentiles,
    replicas_for,
    stage_breakdown,
    tiles_per_frame,
)

MS = 1_000_000


def frame(t0: int, hops: list[tuple[str, int, int]], stored: int) -> StoredFrame:
    return StoredFrame(t0, stored, tuple(hops))


def test_tiles_per_frame_matches_the_recipe_grid():
    assert tiles_per_frame(512, 512, 128, 16) == 25  # 0,112,224,336,384 on each axis
    assert tiles_per_frame(128, 128, 128, 16) == 1
    assert tiles_per_frame(2048, 1024, 256, 32) == 9 * 5  # stride 224: 0..1792; 0..672, 768


def test_percentiles_of_a_known_sample_and_nan_when_empty():
    p = percentiles(list(range(1, 101)))
    assert p["p50"] == pytest.approx(50.5)
    assert p["p99"] == pytest.approx(99.01)
    assert all(math.isnan(v) for v in percentiles([]).values())


def test_spans_cover_capture_to_commit_without_gaps():
    f = frame(
        0,
        [
            ("ingest", 0, 5 * MS),
            ("tiling", 7 * MS, 20 * MS),
            ("inference", 30 * MS, 80 * MS),
            ("postprocess", 81 * MS, 100 * MS),
        ],
        stored=110 * MS,
    )
    spans = frame_spans(f)
    assert [(s, p) for s, p, _ in spans] == [
        ("ingest", "process"),
        ("tiling", "queue"),
        ("tiling", "process"),
        ("inference", "queue"),
        ("inference", "process"),
        ("postprocess", "queue"),
        ("postprocess", "process"),
        ("store", "queue+write"),
    ]
    assert sum(s for _, _, s in spans) == pytest.approx(0.110)
    assert latencies([f]) == [pytest.approx(0.110)]


def test_breakdown_shares_add_up_and_name_the_slow_stage():
    frames = [
        frame(
            i * 1000 * MS,
            [
                ("ingest", i * 1000 * MS, i * 1000 * MS + MS),
                ("tiling", i * 1000 * MS + 2 * MS, i * 1000 * MS + 3 * MS),
                ("inference", i * 1000 * MS + 4 * MS, i * 1000 * MS + (90 + i) * MS),
            ],
            stored=i * 1000 * MS + (100 + i) * MS,
        )
        for i in range(10)
    ]
    rows = stage_breakdown(frames)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    slowest = max(rows, key=lambda r: r["mean_s"])
    assert (slowest["stage"], slowest["phase"]) == ("inference", "process")
    assert slowest["p99_s"] >= slowest["p50_s"]
    assert stage_breakdown([]) == []


def test_replicas_for_rounds_up_and_refuses_nonsense():
    assert replicas_for(1000, 400) == 3
    assert replicas_for(10, 400) == 1
    with pytest.raises(ValueError):
        replicas_for(1000, 0)


def test_pin_tree_pins_a_process_its_threads_and_its_children_also_later_ones():
    import os
    import subprocess
    import sys
    import time

    from services.bench.procstats import pin_tree, tree

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs 2 cores")
    # a parent with a thread and a child, that starts a second child once told to
    code = (
        "import subprocess, sys, threading, time\n"
        "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "a = subprocess.Popen(['sleep', '30'])\n"
        "sys.stdin.readline()\n"
        "b = subprocess.Popen(['sleep', '30'])\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 10
        while len(tree(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pin_tree(parent.pid, {cores[-1]}) >= 3  # parent's 2 threads + the child
        parent.stdin.write("\n")
        parent.stdin.flush()
        later = int(parent.stdout.readline())
        for pid in tree(parent.pid):
            for tid in os.listdir(f"/proc/{pid}/task"):
                assert os.sched_getaffinity(int(tid)) == {cores[-1]}
        assert later in tree(parent.pid)
        assert os.sched_getaffinity(0) == set(cores), "the caller itself is left alone"
        # the parent alone, its children keep theirs (a bench pins itself, not the
        # tritonserver it started)
        pin_tree(parent.pid, {cores[0]}, children=False)
        assert os.sched_getaffinity(parent.pid) == {cores[0]}
        assert os.sched_getaffinity(later) == {cores[-1]}
    finally:
        for pid in reversed(tree(parent.pid)):
            os.kill(pid, 9)
        parent.wait()


def test_pin_cores_gives_triton_its_cores_even_though_it_is_a_child_of_the_bench():
    """The bench starts tritonserver, the broker and PostgreSQL itself: pinning the bench
    process must not drag tritonserver onto the pipeline's cores."""
    import os
    import subprocess
    from types import SimpleNamespace

    from services.bench.procstats import pin_tree
    from services.bench.run import pin_cores

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs 2 cores")
    procs = {k: subprocess.Popen(["sleep", "30"]) for k in ("triton", "broker", "postgres")}
    stack = SimpleNamespace(**{k: SimpleNamespace(process=p) for k, p in procs.items()})
    try:
        layout = pin_cores(stack, 1)  # type: ignore[arg-type]
        assert layout == {"tritonserver": cores[:1], "everything else": cores[1:]}
        assert os.sched_getaffinity(procs["triton"].pid) == set(cores[:1])
        assert os.sched_getaffinity(procs["broker"].pid) == set(cores[1:])
        assert os.sched_getaffinity(procs["postgres"].pid) == set(cores[1:])
        assert os.sched_getaffinity(0) == set(cores[1:])
        with pytest.raises(ValueError, match="at least one for the pipeline"):
            pin_cores(stack, len(cores))  # type: ignore[arg-type]
    finally:
        pin_tree(os.getpid(), set(cores), children=False)  # the rest of the session
        for p in procs.values():
            p.kill()
            p.wait()
