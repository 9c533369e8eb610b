"""The pipeline watched by a real Prometheus: every dashboard query, the latency histogram
against the database, and score drift when a line's camera changes.

One pipeline run serves every check (the run is the expensive part): two lines with one
synthetic camera each; half-way through, line-1's lamp dims to 60 % and its lens
defocuses (the recipe's flat field divides the lamp out, the defocus it cannot), line-2
stays as it was.

- steady: line-2 over the whole run and line-1 before the change keep the drift gauge
  (KS distance to the calibration scores) below the alert threshold on a full window;
- drift: line-1's gauge crosses it and DefectflowScoreDrift fires for line-1 (and only
  line-1) in Prometheus's alerts API;
- every panel query of monitoring/dashboards/defectflow.json is valid and returns series
  (GPU panels excepted: the DCGM exporter needs an NVIDIA GPU);
- the p99 frame->record latency from the histogram agrees with the p99 the database's
  own timestamps give, within one bucket.
"""

from __future__ import annotations

import bisect
import json
import re
import shutil
import time

import numpy as np
import pytest
import sqlalchemy as sa
from kafka import KafkaProducer

from services.common import drift, topics
from services.common.metrics import LATENCY_BUCKETS
from services.localstack.prometheus import DASHBOARD, Prometheus, PrometheusError

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# 10 % defective parts: the drift window (parts below the NG threshold, 50 of them) fills
# before the change; the seed fixes which parts are defective
FPS, FRAMES, CHANGE_AFTER, DIM, DEFECT_RATE = 2.0, 130, 65, 0.6, 0.1
DEFOCUS = 2.0  # px, Gaussian sigma
WINDOW = drift.DEFAULT_WINDOW
# exporters this machine cannot run: their panels must parse but may be empty
NEEDS_GPU = re.compile(r"DCGM_FI_")


def ensure_drift_reference(stack) -> None:
    """The calibration scores beside the recipe; `defectflow fit`/`calibrate` write them,
    an older prepared work dir may lack them: score the same held-out parts calibration
    uses, through the same offline path."""
    recipe = stack.prepared.recipe
    path = drift.reference_path(stack.workdir / "recipes", recipe.id)
    if path.exists():
        return
    from models.anomaly.train import synth_images
    from services.offline.inspect import Inspector

    inspector = Inspector(recipe, stack.prepared.onnx_path)
    images = synth_images("brushed_metal", range(10_000, 10_060), (512, 512))
    scores = [inspector.inspect(img).decision.score for img in images]
    drift.save_reference(stack.workdir / "recipes", recipe.id, recipe.version, scores)


def panel_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    out = []
    for p in panels:
        for t in p.get("targets", []):
            expr = t["expr"].replace("$__rate_interval", "1m").replace("$line", ".*")
            out.append((p["title"], expr))
    return out


def bucket_index(seconds: float) -> int:
    return bisect.bisect_left(LATENCY_BUCKETS, seconds)


@pytest.fixture(scope="module")
def prom(stack):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (apt-get install --no-install-recommends prometheus)")
    stack.stop_services()  # whatever an earlier test left running
    p: Prometheus = stack.start_prometheus()
    yield p
    stack.stop_services()
    p.stop()
    stack.prometheus = None


@pytest.fixture(scope="module")
def run(stack, prom):
    ensure_drift_reference(stack)
    truth_path = stack.workdir / "monitoring_truth.jsonl"
    truth_path.unlink(missing_ok=True)
    engine = sa.create_engine(stack.postgres.url)
    try:
        yield _pipeline_run(stack, prom, truth_path, engine)
    finally:
        # leave the shared database as found: the pipeline test counts every record
        if truth_path.exists():
            ids = [json.loads(x)["frame_id"] for x in truth_path.read_text().splitlines()]
            with engine.begin() as conn:
                conn.execute(
                    sa.text("delete from inspections where frame_id = any(:ids)"), {"ids": ids}
                )
        engine.dispose()


def _pipeline_run(stack, prom: Prometheus, truth_path, engine) -> dict:
    pipeline_started_ns = time.time_ns()
    stack.start_pipeline()
    producer = KafkaProducer(bootstrap_servers=stack.broker.bootstrap, acks="all")
    producer.send(topics.FRAMES, key=b"line-9/station-9/cam-9", value=b"\x08\x01junk\xff").get(10)
    producer.close()
    started = time.time()
    ingest = stack.start_service(
        "ingest",
        {
            "lines": "2",
            "cameras_per_line": "1",
            "fps": str(FPS),
            "frames": str(FRAMES),
            "seed": "11",
            "defect_rate": str(DEFECT_RATE),
            "ground_truth_path": str(truth_path),
            "illumination_gain": str(DIM),
            "defocus_sigma": str(DEFOCUS),
            "illumination_after": str(CHANGE_AFTER),
            "illumination_lines": "line-1",
        },
    )
    # while frames flow: every dashboard query, evaluated live
    time.sleep(FRAMES / FPS * 0.8)
    assert ingest.alive(), f"ingest stopped early, see {ingest.log_path}"
    live = {}
    for title, expr in panel_queries():
        try:
            live[(title, expr)] = prom.query(expr)
        except PrometheusError as exc:
            live[(title, expr)] = exc
    ingest.proc.wait(timeout=FRAMES / FPS + 120)
    assert ingest.proc.returncode == 0, f"ingest failed, see {ingest.log_path}"
    truth = [json.loads(x) for x in truth_path.read_text().splitlines()]
    assert len(truth) == 2 * FRAMES
    ids = [t["frame_id"] for t in truth]
    deadline = time.monotonic() + 240
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "select frame_id, line, part_id, captured_unix_ns, stored_unix_ns,"
                    " processed_unix_ns from inspections where frame_id = any(:ids)"
                ),
                {"ids": ids},
            ).all()
        if len(rows) == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(rows) == len(ids), f"{len(rows)} of {len(ids)} frames stored"
    # every row this run's store wrote: its latency histogram saw exactly these (an
    # earlier test's backlog in the inspections topic included)
    with engine.connect() as conn:
        written = conn.execute(
            sa.text(
                "select captured_unix_ns, stored_unix_ns from inspections"
                " where stored_unix_ns >= :t"
            ),
            {"t": pipeline_started_ns},
        ).all()
    return {
        "prom": prom,
        "live": live,
        "rows": rows,
        "written": written,
        "started": started,
        "model": stack.prepared.recipe.model.name,
    }


def test_every_dashboard_query_returns_series(run):
    empty, invalid = [], []
    for (title, expr), result in run["live"].items():
        if isinstance(result, PrometheusError):
            invalid.append(f"{title}: {expr}: {result}")
        elif not result and not NEEDS_GPU.search(expr):
            empty.append(f"{title}: {expr}")
    assert not invalid, "invalid dashboard queries:\n" + "\n".join(invalid)
    assert not empty, "dashboard queries without series:\n" + "\n".join(empty)
    # and the figures mean something: both lines inspect, Triton reports its batches
    by_title = {}
    for (title, _), result in run["live"].items():
        by_title.setdefault(title, []).append(result)
    throughput = {
        r["metric"]["line"]: float(r["value"][1]) for r in by_title["Throughput per line"][0]
    }
    assert set(throughput) == {"line-1", "line-2"} and min(throughput.values()) > 0.5
    # Triton lists every loaded model; the recipe's anomaly model ran, in batches
    model = run["model"]
    batch = {r["metric"]["model"]: float(r["value"][1]) for r in by_title["Batch size"][0]}
    assert batch.get(model, 0.0) >= 1.0, batch


def test_p99_latency_from_the_histogram_matches_the_database(run):
    prom, written = run["prom"], run["written"]
    n = len(written)

    def observed() -> float:
        res = prom.query("sum(defectflow_frame_to_record_seconds_count)")
        return float(res[0]["value"][1]) if res else 0.0

    # Prometheus has scraped the final counts: one observation per row the store wrote
    prom.wait_for(lambda: observed() >= n, 30, f"{n} observations in the latency histogram")
    assert observed() == n
    (res,) = prom.query(
        "histogram_quantile(0.99, sum by (le) (defectflow_frame_to_record_seconds_bucket))"
    )
    from_histogram = float(res["value"][1])
    measured = np.array([(r.stored_unix_ns - r.captured_unix_ns) / 1e9 for r in written])
    own = float(np.quantile(measured, 0.99))
    print(
        f"\np99 frame->record: histogram {from_histogram:.3f} s, database {own:.3f} s "
        f"(p50 {np.median(measured):.3f} s, {n} frames)"
    )
    assert abs(bucket_index(from_histogram) - bucket_index(own)) <= 1, (from_histogram, own)


def test_drift_gauge_stays_low_when_steady_and_the_alert_fires_when_the_camera_changes(run):
    prom, rows = run["prom"], run["rows"]
    line1 = sorted((r for r in rows if r.line == "line-1"), key=lambda r: r.part_id)
    last_steady = line1[CHANGE_AFTER - 1].processed_unix_ns / 1e9
    since = int(last_steady - run["started"]) + 1

    def at(expr: str, t: float) -> dict[str, float]:
        res = prom.api("query", query=expr, time=f"{t:.3f}")["result"]
        return {r["metric"].get("line", ""): float(r["value"][1]) for r in res}

    # the gauge as the alert sees it: only on windows of at least ALERT_MIN_WINDOW scores
    judged = (
        "(defectflow_score_drift_ks and defectflow_score_drift_window_scores"
        f" >= {drift.ALERT_MIN_WINDOW})"
    )
    # before the change: a full window on line-1 and the gauge below the threshold
    full = at(f"max_over_time(defectflow_score_drift_window_scores[{since}s])", last_steady)
    assert full.get("line-1") == WINDOW, full
    steady = at(f"max_over_time({judged}[{since}s:1s])", last_steady)
    assert steady["line-1"] < drift.KS_ALERT, steady
    # line-2 never changed: below the threshold over the whole run
    whole = int(time.time() - run["started"]) + 1
    ks_all = at(f"max_over_time({judged}[{whole}s:1s])", time.time())
    print(
        f"\ndrift KS on windows >= {drift.ALERT_MIN_WINDOW}: before the change {steady}, run {ks_all}"
    )
    # line-1 crossed the threshold after its lamp dimmed and its lens defocused
    assert ks_all["line-1"] > drift.KS_ALERT, ks_all
    assert ks_all["line-2"] < drift.KS_ALERT, ks_all

    def firing():
        alerts = [a for a in prom.alerts() if a["labels"]["alertname"] == "DefectflowScoreDrift"]
        return [a for a in alerts if a["state"] == "firing"]

    fired = prom.wait_for(firing, 90, "firing DefectflowScoreDrift alert")
    assert {a["labels"]["line"] for a in fired} == {"line-1"}, fired
    print(
        f"\ndrift KS: line-1 steady max {steady['line-1']:.2f}, after the change "
        f"{ks_all['line-1']:.2f}; line-2 max {ks_all['line-2']:.2f} (alert at {drift.KS_ALERT})"
    )
