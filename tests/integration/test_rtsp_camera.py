"""An RTSP camera whose server restarts mid-stream: ingest reconnects by itself, counts the
gap, and the other camera keeps flowing (real GStreamer RTSP server, real broker)."""

from __future__ import annotations

import time

import pytest

from services.localstack.rtsp import start_rtsp_camera
from tests.e2e.test_pipeline import wait_for
from tests.scrape import metric_sum

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_rtsp_server_restart_is_reconnected_and_counted(local, broker, tmp_path):
    server = start_rtsp_camera(tmp_path, fps=10, label="rtsp-cam")
    cameras = tmp_path / "cameras.yaml"
    cameras.write_text(
        "cameras:\n"
        f"  rtsp-1: {{driver: rtsp, line: line-5, station: st-5, url: '{server.url}', fps: 4,"
        " stall_s: 3}\n"
        "  synth-1: {driver: synthetic, line: line-6, station: st-6, fps: 4, width: 128,"
        " height: 128}\n"
    )
    ingest = local.start_service(
        "ingest",
        {"cameras_path": str(cameras), "spool_dir": str(tmp_path / "spool")},
        replica=5,
    )
    url = local.metrics_urls()["ingest-5"]
    accepted = "defectflow_frames_accepted_total"
    try:
        wait_for(lambda: metric_sum(url, accepted, camera="rtsp-1") >= 8, 60, "RTSP frames flowing")
        server.stop()  # the camera's server dies mid-stream ...
        down_at = time.monotonic()
        synth_before = metric_sum(url, accepted, camera="synth-1")
        wait_for(
            lambda: metric_sum(url, "defectflow_camera_connected", camera="rtsp-1") == 0,
            20,
            "ingest noticing the camera is down",
        )
        time.sleep(2.0)
        rtsp_during = metric_sum(url, accepted, camera="rtsp-1")
        synth_during = metric_sum(url, accepted, camera="synth-1")
        server = start_rtsp_camera(tmp_path, port=server.port, fps=10, label="rtsp-cam")  # ... back
        wait_for(
            lambda: metric_sum(url, accepted, camera="rtsp-1") >= rtsp_during + 8,
            60,
            "RTSP frames flowing again",
        )
        outage = time.monotonic() - down_at
        gap = metric_sum(url, "defectflow_camera_gap_seconds_total", camera="rtsp-1")
        reconnects = metric_sum(url, "defectflow_camera_events_total", camera="rtsp-1")
        assert ingest.alive(), f"see {ingest.log_path}"
    finally:
        local.services.pop("ingest-5").stop()
        server.stop()
    # the other camera kept its rate (4 fps) while the RTSP camera was down
    assert synth_during - synth_before >= 4, (synth_before, synth_during)
    assert reconnects >= 1
    assert 1.0 < gap <= outage + 1.0, (gap, outage)
    print(f"\nRTSP restart: outage {outage:.1f} s, gap counted {gap:.1f} s")
