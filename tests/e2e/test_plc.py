"""The factory floor end to end: an OPC UA PLC announces parts, GigE Vision cameras capture
them, the pipeline inspects them, and each part's verdict goes back to the PLC."""

from __future__ import annotations

import os
import shutil
import statistics
import time

import pytest
import sqlalchemy as sa

from services.localstack.plc import start_plc_simulator
from services.localstack.process import ManagedProcess
from tests.e2e.test_pipeline import wait_for
from tests.scrape import metric_sum

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PARTS_PER_STATION, TAKT_S = 50, 0.3  # 100 parts on 2 stations
VIEWS = {"station-1": 2, "station-2": 1}


def fake_gige_camera(workdir, serial: str) -> ManagedProcess:
    """Aravis' simulated GigE Vision camera on 127.0.0.1 (Debian aravis-tools)."""
    exe = shutil.which("arv-fake-gv-camera-0.8")
    assert exe, "arv-fake-gv-camera-0.8 missing: .ci/setup installs aravis-tools"
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir / "xdg-cache"))
    return ManagedProcess(
        name=f"gige-{serial}",
        argv=[exe, "-i", "127.0.0.1", "-s", serial],
        log_path=workdir / "logs" / f"gige-{serial}.log",
        env=env,
    ).start()


def test_plc_parts_get_exactly_one_verdict_and_records_carry_the_plc_part_id(stack, tmp_path):
    stations = list(VIEWS)
    camera = fake_gige_camera(stack.workdir, "FC013")
    sim = start_plc_simulator(stack.workdir, stations, PARTS_PER_STATION, TAKT_S)
    # station-1: the GigE Vision camera on 127.0.0.1 (GVCP/GVSP over UDP) and a second view
    # from Aravis' in-process fake camera (one GigE camera per IP address: port 3956)
    cameras = tmp_path / "cameras.yaml"
    gige = (
        "{driver: gige, pixel_format: Mono8, region: [0, 0, 256, 256], trigger: software, fps: 20"
    )
    cameras.write_text(
        "plc_stations: [station-1, station-2]\n"
        "cameras:\n"
        f"  plc-cam-1-1: {gige}, line: line-1, station: station-1, device: 127.0.0.1}}\n"
        f"  plc-cam-1-2: {gige}, line: line-1, station: station-1, device: Fake_1}}\n"
        f"  plc-cam-2-1: {gige}, line: line-2, station: station-2, device: Fake_1}}\n"
    )
    try:
        if "tiling" not in stack.services:
            stack.start_pipeline()
        plc = stack.start_service(
            "plc",
            {
                "endpoint": sim.endpoint,
                "cameras_path": str(cameras),
                "deadline_s": "30",  # the whole pipeline on 2 shared CPU cores
                "window_s": "15",
            },
        )
        ingest = stack.start_service(
            "ingest",
            {
                "cameras_path": str(cameras),
                "plc_endpoint": sim.endpoint,
                "spool_dir": str(tmp_path / "spool"),
                "recipe_id": stack.prepared.recipe.id,
            },
            replica=13,
        )
        urls = stack.metrics_urls()
        wait_for(
            lambda: (
                metric_sum(urls["plc"], "defectflow_plc_connected") == 1
                and metric_sum(urls["ingest-13"], "defectflow_camera_connected") == 3
            ),
            60,
            "the plc service and the 3 cameras connected",
        )
        time.sleep(1.0)  # ingest's own OPC UA session: up within its first second
        sim.go()
        n_parts = PARTS_PER_STATION * len(stations)

        def verdicts():
            v = [e for e in sim.events() if e["event"] == "verdict"]
            return v if len(v) >= n_parts else None

        wait_for(verdicts, 180, f"{n_parts} verdicts at the PLC")
        time.sleep(2)  # a second verdict for any part would arrive now
        events = sim.events()
        assert plc.alive() and ingest.alive(), f"see {plc.log_path} and {ingest.log_path}"
    finally:
        for label in ("ingest-13", "plc"):
            if label in stack.services:
                stack.services.pop(label).stop()
        sim.stop()
        camera.stop()

    triggers = {e["part_id"]: e for e in events if e["event"] == "trigger"}
    verdicts = [e for e in events if e["event"] == "verdict"]
    assert len(triggers) == n_parts
    by_part: dict[str, list[dict]] = {}
    for v in verdicts:
        by_part.setdefault(v["part_id"], []).append(v)
    assert set(by_part) == set(triggers), "a verdict for every part the PLC announced"
    twice = {p: vs for p, vs in by_part.items() if len(vs) != 1}
    assert not twice, f"parts with more than one verdict: {twice}"
    assert all(v["verdict"] in (1, 2, 3) for v in verdicts)
    assert all(by_part[p][0]["station"] == t["station"] for p, t in triggers.items())
    timeouts = [v for v in verdicts if v["code"] == "TIMEOUT"]
    assert not timeouts, f"{len(timeouts)} parts ended in the deadline fail-safe"

    engine = sa.create_engine(stack.postgres.url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select frame_id, part_id, camera from inspections where part_id like 'station-%-P%'"
            )
        ).all()
    frame_ids = [r.frame_id for r in rows]
    assert len(frame_ids) == len(set(frame_ids)), "one record per frame"
    per_part: dict[str, set[str]] = {}
    for r in rows:
        per_part.setdefault(r.part_id, set()).add(r.camera)
    assert set(per_part) == set(triggers), "every record carries a part id the PLC assigned"
    wrong = {p: c for p, c in per_part.items() if len(c) != VIEWS[triggers[p]["station"]]}
    assert not wrong, f"parts without one record per camera: {wrong}"
    assert len(rows) == sum(VIEWS[t["station"]] for t in triggers.values())

    latency = sorted((by_part[p][0]["t_ns"] - t["t_ns"]) / 1e6 for p, t in triggers.items())
    p50 = statistics.median(latency)
    p99 = latency[min(len(latency) - 1, int(0.99 * len(latency)))]
    print(
        f"\nPLC trigger -> verdict over {len(latency)} parts ({len(rows)} frames): "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {latency[-1]:.0f} ms"
    )
