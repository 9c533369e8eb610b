"""The idempotent writer against a real PostgreSQL."""

import pytest
import sqlalchemy as sa
from defectflow.v1 import common_pb2, inspections_pb2

from services.store.adapters import db
from services.store.logic import inspection_row

pytestmark = pytest.mark.integration


def inspection(frame_id: str, verdict: int = 1, n_defects: int = 0) -> inspections_pb2.Inspection:
    msg = inspections_pb2.Inspection(
        schema_version=1,
        verdict=verdict,
        score=1.5,
        complete=True,
        context=common_pb2.FrameContext(
            frame_id=frame_id,
            recipe_id="r",
            recipe_version=1,
            source=common_pb2.FrameSource(line="l1", station="s1", camera="c1"),
        ),
    )
    for _ in range(n_defects):
        msg.defects.add(defect_class="anomaly", score=3.0, area_px=10, area_mm2=0.1)
    return msg


def test_redelivered_inspections_never_create_a_second_row(postgres):
    engine = sa.create_engine(postgres.url)
    db.upgrade(engine)
    db.upgrade(engine)  # re-running the migrations is a no-op
    batch = [
        inspection_row(m, m.SerializeToString(), 1)
        for m in (inspection("dup-a", 2, 2), inspection("dup-b"))
    ]
    rows, children = zip(*batch, strict=True)
    assert db.write_batch(engine, rows, children) == 2
    assert db.write_batch(engine, rows, children) == 0
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("select count(*) from inspections where frame_id like 'dup-%'")
        ).scalar_one()
        d = conn.execute(
            sa.text(
                "select count(*) from defects join inspections i on i.id = inspection_id "
                "where i.frame_id = 'dup-a'"
            )
        ).scalar_one()
    assert (n, d) == (2, 2)


def test_concurrent_writers_with_overlapping_redeliveries_store_each_frame_once(postgres):
    """Four writers, each redelivering the same 300 frames in its own order and batching:
    no deadlock, no error, one row per frame and one set of defects each."""
    import random
    import threading

    engine = sa.create_engine(postgres.url, pool_size=8)
    db.upgrade(engine)
    frames = [inspection(f"cw-{i:04d}", 2 if i % 3 == 0 else 1, i % 3 == 0) for i in range(300)]
    errors: list[BaseException] = []
    inserted: list[int] = []

    def writer(seed: int) -> None:
        order = frames[:]
        random.Random(seed).shuffle(order)
        try:
            for start in range(0, len(order), 37 + seed):
                batch = [
                    inspection_row(m, m.SerializeToString(), 1)
                    for m in order[start : start + 37 + seed]
                ]
                rows, children = zip(*batch, strict=True)
                inserted.append(db.write_batch(engine, rows, children))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(inserted) == len(frames)
    with engine.connect() as conn:
        n, distinct = conn.execute(
            sa.text(
                "select count(*), count(distinct frame_id) from inspections where frame_id like 'cw-%'"
            )
        ).one()
        d = conn.execute(
            sa.text(
                "select count(*) from defects join inspections i on i.id = inspection_id "
                "where i.frame_id like 'cw-%'"
            )
        ).scalar_one()
    assert (n, distinct, d) == (300, 300, 100)
