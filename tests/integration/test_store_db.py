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
