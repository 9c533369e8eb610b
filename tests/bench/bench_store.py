"""Benchmark: inspections stored per second by the store's batch writer.

Starts its own PostgreSQL on 127.0.0.1 with durable settings (fsync and synchronous
commit on, as in production), feeds realistic serialized inspections through the
store's handler (protobuf decode -> rows -> one INSERT ... ON CONFLICT per batch) and
prints inspections/s; Kafka is not in the loop. Then replays everything again to show
the cost of duplicate deliveries, and runs two writers at once.

    flock /tmp/defectflow-heavy.lock python3 tests/bench/bench_store.py [--n 20000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from defectflow.v1 import common_pb2, inspections_pb2
from kafka.consumer.fetcher import ConsumerRecord

from services.localstack.postgres import start_postgres
from services.store.adapters import db
from services.store.main import StoreHandler


def inspections(n: int, seed: int = 1, prefix: str = "bench") -> list[bytes]:
    """Like postprocess output: a third NG with 1-3 defects and 24-point contours."""
    rng = random.Random(seed)
    out = []
    t0 = time.time_ns()
    for i in range(n):
        ng = i % 3 == 0
        msg = inspections_pb2.Inspection(
            schema_version=1,
            verdict=2 if ng else 1,
            score=rng.uniform(0, 5),
            complete=True,
            tiles_expected=12,
            tiles_received=12,
            model_versions={"patchcore": "3", "detector": "1"},
            reasons=["image score over threshold"] if ng else [],
            context=common_pb2.FrameContext(
                frame_id=f"{prefix}-{i:08d}",
                part_id=f"P{i // 4:07d}",
                recipe_id="brushed-metal",
                recipe_version=2,
                captured_unix_ns=t0 + i * 1_000_000,
                sequence=i,
                source=common_pb2.FrameSource(
                    line=f"line-{i % 4}", station="st-1", camera=f"cam-{i % 2}"
                ),
                image=common_pb2.ImageRef(
                    blob_uri=f"file:///var/defectflow/blobs/ab/cd/{prefix}-{i:08d}.png",
                    encoding="png",
                    width=1280,
                    height=1024,
                    channels=1,
                    sha256="ab" * 32,
                    size_bytes=900_000,
                ),
            ),
        )
        for stage in ("ingest", "tiling", "inference", "postprocess"):
            msg.stamps.add(stage=stage, received_unix_ns=t0, sent_unix_ns=t0 + 50_000_000)
        for _ in range(rng.randint(1, 3) if ng else 0):
            d = msg.defects.add(defect_class=rng.choice(["scratch", "dent", "stain"]))
            d.score, d.area_px, d.area_mm2, d.source = rng.uniform(3, 9), 120, 0.5, "anomaly"
            d.box.x0, d.box.y0, d.box.x1, d.box.y1 = 100, 100, 140, 130
            for k in range(24):
                d.contour.add(x=100 + k, y=100 + (k * 7) % 30)
        out.append(msg.SerializeToString())
    return out


def records(values: list[bytes]) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(
            "defectflow.inspections.v1", 0, -1, i, 0, 0, None, v, [], None, -1, len(v), -1
        )
        for i, v in enumerate(values)
    ]


def run(handler: StoreHandler, recs: list[ConsumerRecord], batch: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, len(recs), batch):
        handler.handle(recs[start : start + batch])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500, help="the store's max_poll_records")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="defectflow-bench-store-"))
    work.chmod(0o755)
    pg = start_postgres(work / "pg", fast_unsafe=False)
    try:
        engine = sa.create_engine(pg.url, pool_size=4)
        db.upgrade(engine)
        handler = StoreHandler(engine)
        values = inspections(args.n)
        recs = records(values)
        avg = sum(map(len, values)) / len(values)
        print(f"{args.n} inspections, {avg:.0f} bytes each on average, batches of {args.batch}")
        run(handler, records(inspections(2000, 2, "warm")), args.batch)  # warm-up

        dt = run(handler, recs, args.batch)
        print(f"stored (1 writer):        {args.n / dt:8.0f} inspections/s ({dt:.2f} s)")
        dt = run(handler, recs, args.batch)
        print(f"redelivered, no-ops:      {args.n / dt:8.0f} inspections/s ({dt:.2f} s)")

        halves = [records(inspections(args.n // 2, 10 + w, f"par{w}")) for w in range(2)]
        threads = [threading.Thread(target=run, args=(handler, h, args.batch)) for h in halves]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        print(f"stored (2 writers):       {args.n / dt:8.0f} inspections/s ({dt:.2f} s)")
        with engine.connect() as conn:
            n = conn.execute(sa.text("select count(*) from inspections")).scalar_one()
        expected = 2000 + args.n + 2 * (args.n // 2)
        assert n == expected, f"{n} rows, expected {expected}"
        engine.dispose()
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
