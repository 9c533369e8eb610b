"""Backpressure benchmark: service memory while tritonserver is stalled (SIGSTOP), printed.

Every stage holds a bounded amount of work: inference has at most `max_in_flight`
Triton requests for one poll batch (`max_poll_records`) and polls nothing more
while they are outstanding; postprocess holds at most `max_pending_frames`; the
store one poll batch; ingest sends synchronously and its cameras drop ticks by
their policy. So while Triton is stalled the backlog stays in the broker and the
services' resident memory should stay flat. This measures it.

Run: `python tests/bench/bench_backpressure.py [--stall-s 40]`, or
`pytest tests/bench/bench_backpressure.py -s` (bounded: about 3 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.localstack.process import free_port  # noqa: E402
from services.localstack.stack import LocalStack  # noqa: E402
from tests.scrape import metric_sum  # noqa: E402

SERVICES = ("ingest", "tiling", "inference", "postprocess", "store")


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def metric(port: int, name: str) -> float:
    total = metric_sum(f"http://127.0.0.1:{port}/metrics", name)
    return total if total >= 0 else float("nan")


def stored(engine: sa.Engine) -> int:
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("select count(*) from inspections")).scalar_one())
    except sa.exc.SQLAlchemyError:
        return -1


def run(stall_s: float = 40.0, before_s: float = 20.0, after_s: float = 40.0) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="defectflow-bench-bp-"))
    os.chmod(workdir, 0o755)
    stack = LocalStack(workdir)
    ports = {name: free_port() for name in SERVICES}
    try:
        stack.start_components()
        stack.start_pipeline({n: {"metrics_port": str(ports[n])} for n in SERVICES[1:]})
        truth = workdir / "accepted.jsonl"
        stack.start_service(
            "ingest",
            {
                "lines": "2",
                "cameras_per_line": "2",
                "fps": "1",
                "width": "240",
                "height": "240",
                "ground_truth_path": str(truth),
                "metrics_port": str(ports["ingest"]),
            },
        )
        engine = sa.create_engine(stack.postgres.url)
        samples: list[dict] = []
        t0 = time.monotonic()

        def sample(phase: str, seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                row = {"t": round(time.monotonic() - t0, 1), "phase": phase}
                for n in SERVICES:
                    row[n] = rss_mib(stack.services[n].pid)
                row["stored"] = stored(engine)
                row["accepted"] = sum(1 for _ in truth.open()) if truth.exists() else 0
                samples.append(row)
                time.sleep(1.0)

        sample("flowing", before_s)
        triton_pgid = stack.triton.process.pid
        os.killpg(triton_pgid, signal.SIGSTOP)
        try:
            sample("triton stalled", stall_s)
        finally:
            os.killpg(triton_pgid, signal.SIGCONT)
        sample("recovering", after_s)
        dropped = metric(ports["ingest"], "defectflow_camera_frames_dropped_total")
        transient = metric(ports["inference"], "defectflow_transient_failures_total")
        alive = {n: stack.services[n].alive() for n in SERVICES}
        return {
            "samples": samples,
            "dropped": dropped,
            "transient_failures_inference": transient,
            "alive": alive,
        }
    finally:
        stack.stop()
        if not os.environ.get("DEFECTFLOW_KEEP_TEST_DIR"):
            shutil.rmtree(workdir, ignore_errors=True)


def report(result: dict) -> str:
    samples = result["samples"]
    lines = [
        "| phase | "
        + " | ".join(f"{n} RSS MiB (min-max)" for n in SERVICES)
        + " | stored | accepted |",
        "|---" * (len(SERVICES) + 3) + "|",
    ]
    for phase in dict.fromkeys(s["phase"] for s in samples):
        rows = [s for s in samples if s["phase"] == phase]
        cells = [f"{min(r[n] for r in rows):.0f}-{max(r[n] for r in rows):.0f}" for n in SERVICES]
        lines.append(
            f"| {phase} ({len(rows)} s) | "
            + " | ".join(cells)
            + f" | {rows[0]['stored']}->{rows[-1]['stored']}"
            + f" | {rows[0]['accepted']}->{rows[-1]['accepted']} |"
        )
    lines.append(
        f"\ncamera ticks dropped by ingest's policy: {result['dropped']:.0f}; "
        f"inference batches redone after Triton failed: {result['transient_failures_inference']:.0f}; "
        f"services alive at the end: {result['alive']}"
    )
    return "\n".join(lines)


def growth(result: dict, service: str) -> float:
    """RSS at the end of the stall minus RSS at the end of the flowing phase (MiB)."""
    s = result["samples"]
    before = [r[service] for r in s if r["phase"] == "flowing"][-1]
    stalled = [r[service] for r in s if r["phase"] == "triton stalled"]
    return max(stalled) - before


def test_memory_stays_flat_while_triton_is_stalled():
    result = run()
    print("\n" + report(result))
    assert all(result["alive"].values()), result["alive"]
    for n in SERVICES:
        print(f"{n}: RSS growth during the stall {growth(result, n):+.1f} MiB")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stall-s", type=float, default=40.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = run(stall_s=args.stall_s)
    print(json.dumps(res) if args.json else report(res))
    for name in SERVICES:
        print(f"{name}: RSS growth during the stall {growth(res, name):+.1f} MiB")
