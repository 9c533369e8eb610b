"""The plc service against a real broker and an OPC UA PLC: verdicts, the deadline
fail-safe, and a PLC that stops answering (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from defectflow.v1 import common_pb2, inspections_pb2
from kafka import KafkaProducer

from services.common import topics
from services.localstack.plc import start_plc_simulator
from tests.e2e.test_pipeline import wait_for
from tests.scrape import metric_sum

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def inspection(part_id: str, verdict: int) -> bytes:
    msg = inspections_pb2.Inspection(
        schema_version=topics.SCHEMA_VERSION,
        verdict=verdict,
        complete=True,
        context=common_pb2.FrameContext(
            frame_id=uuid.uuid4().hex,
            part_id=part_id,
            source=common_pb2.FrameSource(line="line-7", station="fs-station", camera="fs-cam"),
        ),
    )
    if verdict == 2:
        msg.defects.add(defect_class="scratch", score=0.9)
    return msg.SerializeToString()


def failsafe(url: str, reason: str) -> float:
    return metric_sum(url, "defectflow_plc_failsafe_total", reason=reason)


def test_deadline_and_unanswering_plc_end_in_the_fail_safe(local, broker, tmp_path):
    sim = start_plc_simulator(tmp_path, ["fs-station"], parts=15, takt_s=1.0, label="plc-fs")
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(
        "plc_stations: [fs-station]\n"
        "cameras:\n  fs-cam: {driver: synthetic, line: line-7, station: fs-station}\n"
    )
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")

    def send(part_id: str, verdict: int) -> None:
        producer.send(topics.INSPECTIONS, key=b"fs", value=inspection(part_id, verdict)).get(10)

    def triggered(n: int) -> list[str]:
        parts = [e["part_id"] for e in sim.events() if e["event"] == "trigger"]
        return parts if len(parts) >= n else []

    def verdict_of(part: str) -> list[dict]:
        return [e for e in sim.events() if e["event"] == "verdict" and e["part_id"] == part]

    local.start_service(
        "plc",
        {
            "endpoint": sim.endpoint,
            "cameras_path": str(cameras),
            "deadline_s": "2.5",
            "window_s": "1.0",
            "fail_safe": "REVIEW",
            "request_timeout_s": "0.3",
        },
        replica=7,
    )
    url = local.metrics_urls()["plc-7"]
    try:
        wait_for(lambda: metric_sum(url, "defectflow_plc_connected") == 1, 30, "plc connected")
        # the consumer group's first join takes seconds: wait until it reads the topic
        other = inspections_pb2.Inspection.FromString(inspection("warm-up", 1))
        other.context.source.station = "not-a-plc-station"
        producer.send(topics.INSPECTIONS, key=b"fs", value=other.SerializeToString()).get(10)
        wait_for(lambda: metric_sum(url, "defectflow_plc_views_total") >= 1, 30, "plc consuming")
        sim.go()
        p1 = wait_for(lambda: triggered(1), 10, "part 1")[0]
        send(p1, 2)  # NG with a defect
        wait_for(lambda: verdict_of(p1), 10, f"verdict of {p1}")
        p2 = wait_for(lambda: triggered(2), 10, "part 2")[1]  # no inspection: deadline
        wait_for(lambda: verdict_of(p2), 10, f"fail-safe of {p2}")
        p3 = wait_for(lambda: triggered(3), 10, "part 3")[2]
        os.kill(sim.process.pid, signal.SIGSTOP)  # the PLC stops answering
        try:
            send(p3, 1)
            wait_for(
                lambda: failsafe(url, "plc_unreachable") >= 1,
                15,
                "the unreachable PLC counted as a fail-safe",
            )
        finally:
            os.kill(sim.process.pid, signal.SIGCONT)
        # the PLC answers again: the service reconnects and the next part gets its verdict
        time.sleep(1.0)
        wait_for(lambda: metric_sum(url, "defectflow_plc_connected") == 1, 20, "plc reconnected")
        n = len(triggered(0))
        p5 = wait_for(lambda: triggered(n + 1), 10, "a part after the reconnect")[n]
        send(p5, 1)
        wait_for(lambda: verdict_of(p5), 15, f"verdict of {p5}")
        unreachable, deadline = failsafe(url, "plc_unreachable"), failsafe(url, "deadline")
    finally:
        local.services.pop("plc-7").stop()
        sim.stop()
        producer.close()

    (v1,) = verdict_of(p1)
    assert (v1["verdict"], v1["code"]) == (2, "scratch")
    (v2,) = verdict_of(p2)
    assert (v2["verdict"], v2["code"]) == (3, "TIMEOUT"), "deadline -> declared fail-safe"
    (v5,) = verdict_of(p5)
    assert v5["verdict"] == 1
    assert unreachable == 1, "p3's verdict could not be written before its deadline"
    # p2, and the parts announced after p5 that nobody inspects, end in the deadline fail-safe
    assert deadline >= 1
