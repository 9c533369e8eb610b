"""The whole pipeline as processes over the real broker, tritonserver and PostgreSQL."""

from __future__ import annotations

import json
import time

import grpc
import pytest
import sqlalchemy as sa
from defectflow.v1 import deadletter_pb2, query_pb2, query_pb2_grpc
from kafka import KafkaConsumer, KafkaProducer

from services.common import topics

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LINES, CAMERAS, FRAMES_PER_CAMERA = 2, 2, 50


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_two_lines_two_cameras_every_frame_stored_once(stack):
    # other tests share this database: everything below looks at this test's frames only
    started_ns = time.time_ns()
    truth_path = stack.workdir / "e2e_truth.jsonl"
    stack.start_pipeline()
    # a frame that is not a protobuf: must end in the DLQ while everything else flows
    producer = KafkaProducer(bootstrap_servers=stack.broker.bootstrap, acks="all")
    producer.send(
        topics.FRAMES, key=b"line-9/station-9/cam-9", value=b"\x08\x01garbage\xff\xff"
    ).get(10)
    producer.close()
    ingest = stack.start_service(
        "ingest",
        {
            "lines": str(LINES),
            "cameras_per_line": str(CAMERAS),
            "fps": "4",
            "frames": str(FRAMES_PER_CAMERA),
            "ground_truth_path": str(truth_path),
            "seed": "7",
        },
    )
    ingest.proc.wait(timeout=180)
    assert ingest.proc.returncode == 0, f"ingest failed, see {ingest.log_path}"
    truth = {t["frame_id"]: t for t in map(json.loads, truth_path.read_text().splitlines())}
    assert len(truth) == LINES * CAMERAS * FRAMES_PER_CAMERA

    engine = sa.create_engine(stack.postgres.url)

    def stored() -> int | None:
        with engine.connect() as conn:
            n = conn.execute(
                sa.text("select count(*) from inspections where captured_unix_ns >= :t"),
                {"t": started_ns},
            ).scalar_one()
        return n if n >= len(truth) else None

    wait_for(stored, 240, f"{len(truth)} inspections in PostgreSQL")
    time.sleep(2)  # anything extra (a duplicate) would arrive now
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select frame_id, verdict from inspections where captured_unix_ns >= :t"),
            {"t": started_ns},
        ).all()
    ids = [r.frame_id for r in rows]
    assert len(ids) == len(set(ids)) == len(truth), "exactly one record per accepted frame"
    assert set(ids) == set(truth)

    verdict = {r.frame_id: r.verdict for r in rows}
    defective = [f for f, t in truth.items() if t["defect_type"]]
    good = [f for f, t in truth.items() if not t["defect_type"]]
    assert len(defective) >= 30 and len(good) >= 100
    missed = [(truth[f]["defect_type"], verdict[f]) for f in defective if verdict[f] != 2]
    assert not missed, f"obvious defects not NG: {missed}"
    false_ng = [f for f in good if verdict[f] == 2]
    assert len(false_ng) <= 0.02 * len(good), f"{len(false_ng)} of {len(good)} good parts NG"

    # the records come back through the gRPC API, page by page
    stub = query_pb2_grpc.InspectionQueryStub(
        grpc.insecure_channel(f"127.0.0.1:{stack.query_port}")
    )
    seen, token = [], ""
    while True:
        resp = stub.ListInspections(
            query_pb2.ListInspectionsRequest(
                filter=query_pb2.InspectionFilter(captured_from_unix_ns=started_ns),
                page_size=37,
                page_token=token,
            ),
            timeout=10,
        )
        seen += [r.inspection.context.frame_id for r in resp.records]
        token = resp.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(truth)
    ng_frame = defective[0]
    rec = stub.GetInspection(query_pb2.GetInspectionRequest(frame_id=ng_frame), timeout=10)
    assert rec.inspection.verdict == 2 and len(rec.inspection.defects) >= 1
    x0, y0, x1, y1 = truth[ng_frame]["box"]
    boxes = [(d.box.x0, d.box.y0, d.box.x1, d.box.y1) for d in rec.inspection.defects]
    assert any(bx0 < x1 and x0 < bx1 and by0 < y1 and y0 < by1 for bx0, by0, bx1, by1 in boxes), (
        f"no defect box overlaps the true defect {truth[ng_frame]['box']}: {boxes}"
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.GetInspection(query_pb2.GetInspectionRequest(frame_id="no-such-frame"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # the garbage frame is in the dead-letter topic with its reason and source
    consumer = KafkaConsumer(
        topics.DEADLETTER,
        bootstrap_servers=stack.broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    letters = [deadletter_pb2.DeadLetter.FromString(m.value) for m in consumer]
    consumer.close()
    assert any(
        d.reason == "undecodable_protobuf"
        and d.source_topic == topics.FRAMES
        and d.value == b"\x08\x01garbage\xff\xff"
        for d in letters
    ), letters
    assert all(p.alive() for name, p in stack.services.items() if name != "ingest")
