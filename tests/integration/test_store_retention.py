"""Retention against a real PostgreSQL and blob directory: NG kept longer than OK,
images expire before records, and the store's loop applies it on its own."""

from __future__ import annotations

import time

import grpc
import pytest
import sqlalchemy as sa
from defectflow.v1 import common_pb2, inspections_pb2, query_pb2, query_pb2_grpc

from services.common.blobstore import LocalBlobStore
from services.store.adapters import db, grpc_api
from services.store.config import StoreSettings
from services.store.logic import NS_PER_DAY, RetentionPolicy, inspection_row
from services.store.main import RetentionLoop

pytestmark = pytest.mark.integration
OK, NG, REVIEW = 1, 2, 3
POLICY = dict(
    retention_records_ok_days=30,
    retention_records_ng_days=90,
    retention_images_ok_days=7,
    retention_images_ng_days=60,
)


def fresh(postgres, name: str) -> sa.Engine:
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"drop database if exists {name} with (force)"))
        conn.execute(sa.text(f"create database {name}"))
    admin.dispose()
    engine = sa.create_engine(postgres.url.rsplit("/", 1)[0] + "/" + name, pool_pre_ping=True)
    db.upgrade(engine)
    return engine


def put(engine, blobs: LocalBlobStore, now: int, spec: list[tuple[str, int, float]]):
    """(frame_id, verdict, age in days) -> stored record with one defect and a blob image."""
    rows, children, uris = [], [], {}
    for fid, verdict, age in spec:
        uris[fid] = blobs.put(f"{fid}.png", b"\x89PNG fake " + fid.encode())
        msg = inspections_pb2.Inspection(
            verdict=verdict,
            context=common_pb2.FrameContext(
                frame_id=fid,
                captured_unix_ns=now - int(age * NS_PER_DAY),
                source=common_pb2.FrameSource(line="l", station="s", camera="c"),
                image=common_pb2.ImageRef(blob_uri=uris[fid], encoding="png"),
            ),
        )
        msg.defects.add(defect_class="scratch", score=1.0)
        row, ds = inspection_row(msg, msg.SerializeToString(), now)
        rows.append(row)
        children.append(ds)
    db.write_batch(engine, rows, children)
    return uris


def state(engine) -> dict[str, bool]:
    """frame_id -> image kept?"""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select frame_id, not image_purged from inspections")).all()
    return {r[0]: r[1] for r in rows}


def test_ng_records_and_images_outlive_ok_ones(postgres, tmp_path):
    engine = fresh(postgres, "store_retention")
    blobs = LocalBlobStore(tmp_path / "blobs")
    now = time.time_ns()
    uris = put(
        engine,
        blobs,
        now,
        [
            ("ok-5d", OK, 5),  # kept, image kept
            ("ok-10d", OK, 10),  # kept, image gone (> 7 d)
            ("ok-40d", OK, 40),  # gone (> 30 d)
            ("ng-40d", NG, 40),  # kept, image kept (< 60 d)
            ("ng-70d", NG, 70),  # kept, image gone
            ("rv-70d", REVIEW, 70),  # REVIEW is kept like NG
            ("ng-100d", NG, 100),  # gone (> 90 d)
        ],
    )
    policy = RetentionPolicy(30, 90, 7, 60)
    records, images = db.apply_retention(engine, policy, now, blobs, batch=2)
    assert (records, images) == (2, 5)  # images: 3 expired + 2 with deleted records
    assert state(engine) == {
        "ok-5d": True,
        "ok-10d": False,
        "ng-40d": True,
        "ng-70d": False,
        "rv-70d": False,
    }
    exists = {fid: blobs._local(uri).exists() for fid, uri in uris.items()}
    assert exists == {
        "ok-5d": True,
        "ok-10d": False,
        "ok-40d": False,
        "ng-40d": True,
        "ng-70d": False,
        "rv-70d": False,
        "ng-100d": False,
    }
    with engine.connect() as conn:  # defects of deleted records went with them
        n = conn.execute(sa.text("select count(*) from defects")).scalar_one()
    assert n == 5
    assert db.apply_retention(engine, policy, now, blobs) == (0, 0)

    api = grpc_api.serve(
        engine,
        StoreSettings(
            grpc_address="127.0.0.1:0", blob_root=tmp_path / "blobs", open_api=True, **POLICY
        ),
        blobs,
    )
    try:
        stub = query_pb2_grpc.InspectionQueryStub(grpc.insecure_channel(f"127.0.0.1:{api.port}"))
        with pytest.raises(grpc.RpcError) as err:
            stub.GetImage(query_pb2.GetImageRequest(frame_id="ok-10d"), timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert "retention" in err.value.details()
        rec = stub.GetInspection(query_pb2.GetInspectionRequest(frame_id="ng-70d"), timeout=5)
        assert not rec.image_available and len(rec.inspection.defects) == 1
        kept = stub.GetInspection(query_pb2.GetInspectionRequest(frame_id="ng-40d"), timeout=5)
        assert kept.image_available
    finally:
        api.stop(0)
    engine.dispose()


def test_the_store_loop_applies_retention_periodically(postgres, tmp_path):
    engine = fresh(postgres, "store_retention_loop")
    blobs = LocalBlobStore(tmp_path / "blobs")
    settings = StoreSettings(blob_root=tmp_path / "blobs", retention_interval_s=0.3, **POLICY)
    loop = RetentionLoop(engine, settings, blobs).start()
    try:
        time.sleep(0.5)  # a first round on an empty table
        put(engine, blobs, time.time_ns(), [("ok-new", OK, 1), ("ok-old", OK, 31)])
        deadline = time.monotonic() + 10
        while "ok-old" in state(engine):
            assert time.monotonic() < deadline, "retention loop did not run"
            time.sleep(0.2)
        assert state(engine) == {"ok-new": True}
    finally:
        loop.stop()
        engine.dispose()
