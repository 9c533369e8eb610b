"""Metric conventions (names, units, bounded labels), stage spans from stamps, lag gauges,
log lines."""

from __future__ import annotations

import importlib
import io
import json
import logging

import pytest
from prometheus_client import REGISTRY

from services.common import metrics
from services.common.logs import HumanFormatter, JsonFormatter, log_context

SERVICES = ("ingest", "tiling", "inference", "postprocess", "store")
# the only labels a defectflow metric may carry: each a small, known set of values
BOUNDED_LABELS = {
    "stage",
    "topic",
    "partition",
    "line",
    "station",
    "camera",
    "recipe",
    "model",
    "verdict",
    "defect_class",
    "reason",
    "kind",
    "phase",
}


def families():
    for name in SERVICES:  # every service registers its metrics on import
        importlib.import_module(f"services.{name}.main")
    return [f for f in REGISTRY.collect() if f.name.startswith("defectflow_")]


def exported_names() -> set[str]:
    """Every sample name a scrape of the services can show (counters with _total,
    histograms with _bucket/_sum/_count)."""
    names = set()
    for f in families():
        if f.type == "counter":
            names.add(f.name + "_total")
        elif f.type == "histogram":
            names |= {f.name, f.name + "_bucket", f.name + "_sum", f.name + "_count"}
        else:
            names.add(f.name)
    return names


def test_names_follow_prometheus_conventions():
    fams = families()
    assert len(fams) >= 20
    for f in fams:
        assert f.documentation and len(f.documentation) > 10, f"{f.name} needs a help text"
        if f.type == "histogram":
            assert f.name.endswith(("_seconds", "_size")), f"histogram {f.name}: base unit suffix"
        if f.type == "gauge":
            assert not f.name.endswith("_total"), f"gauge {f.name} must not end in _total"
        assert "_milliseconds" not in f.name and "_ms" not in f.name, f"{f.name}: use seconds"


def test_labels_are_bounded():
    for f in families():
        collector = REGISTRY._names_to_collectors.get(f.name) or REGISTRY._names_to_collectors.get(
            f.name + "_total"
        )
        labels = set(getattr(collector, "_labelnames", ()))
        assert labels <= BOUNDED_LABELS, f"{f.name} has unbounded labels {labels - BOUNDED_LABELS}"
        assert not labels & {"frame_id", "frame", "part_id", "part", "offset"}


def test_what_the_issue_lists_is_exported():
    names = exported_names()
    for needed in (
        "defectflow_messages_in_total",
        "defectflow_messages_out_total",
        "defectflow_messages_failed_total",
        "defectflow_dead_letters_total",
        "defectflow_stage_processing_seconds_bucket",
        "defectflow_frame_to_record_seconds_bucket",
        "defectflow_frame_stage_seconds_bucket",
        "defectflow_consumer_lag_messages",
        "defectflow_inference_batch_size_bucket",
        "defectflow_triton_request_seconds_bucket",
        "defectflow_verdicts_total",
        "defectflow_defects_total",
        "defectflow_camera_frames_dropped_total",
        "defectflow_inflight_messages",
        "defectflow_db_rows_written_total",
        "defectflow_db_write_seconds_bucket",
        "defectflow_score_drift_ks",
    ):
        assert needed in names, needed


def test_stage_spans_attribute_a_frames_time():
    s = 1_000_000_000
    stamps = [
        ("ingest", 10 * s, 10 * s + s // 10),  # 0.1 s encoding
        ("tiling", 10 * s + s // 2, 11 * s),  # 0.4 s in Kafka, 0.5 s tiling
        ("inference", 11 * s, 12 * s),
        ("postprocess", 12 * s + s // 4, 12 * s + s // 2),
    ]
    spans = metrics.stage_spans(stamps, captured_ns=10 * s)
    assert spans == [
        ("ingest", "process", pytest.approx(0.1)),
        ("tiling", "queue", pytest.approx(0.4)),
        ("tiling", "process", pytest.approx(0.5)),
        ("inference", "queue", 0.0),
        ("inference", "process", pytest.approx(1.0)),
        ("postprocess", "queue", pytest.approx(0.25)),
        ("postprocess", "process", pytest.approx(0.25)),
    ]
    assert sum(sec for _, _, sec in spans) == pytest.approx(2.5)
    # a clock step between hosts makes no negative time
    assert metrics.stage_spans([("tiling", 5 * s, 4 * s)], 6 * s) == [
        ("tiling", "queue", 0.0),
        ("tiling", "process", 0.0),
    ]


def sample(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_observe_frame_fills_the_latency_histograms():
    s = 1_000_000_000
    before = sample("defectflow_frame_to_record_seconds_count", {"line": "line-u"}) or 0.0
    metrics.observe_frame("line-u", [("ingest", 0, s // 10), ("postprocess", s, 2 * s)], 0, 3 * s)
    assert sample("defectflow_frame_to_record_seconds_count", {"line": "line-u"}) == before + 1
    assert sample("defectflow_frame_to_record_seconds_sum", {"line": "line-u"}) >= 3.0
    # 3 s lands in the le=3 bucket, not the le=2 one
    le3 = {"line": "line-u", "le": "3.0"}
    le2 = {"line": "line-u", "le": "2.0"}
    assert sample("defectflow_frame_to_record_seconds_bucket", le3) == before + 1
    assert sample("defectflow_frame_to_record_seconds_bucket", le2) == 0


def test_lag_gauges_follow_the_assignment():
    metrics.set_lag("tiling", [("defectflow.frames.v1", 0, 7), ("defectflow.frames.v1", 1, -3)], [])
    lag = {"stage": "tiling", "topic": "defectflow.frames.v1"}
    assert sample("defectflow_consumer_lag_messages", {**lag, "partition": "0"}) == 7
    assert sample("defectflow_consumer_lag_messages", {**lag, "partition": "1"}) == 0
    metrics.set_lag("tiling", [], [("defectflow.frames.v1", 0), ("defectflow.frames.v9", 3)])
    assert sample("defectflow_consumer_lag_messages", {**lag, "partition": "0"}) is None
    assert sample("defectflow_consumer_lag_messages", {**lag, "partition": "1"}) == 0


def _log_with(formatter: logging.Formatter) -> str:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(formatter)
    log = logging.getLogger("defectflow.test-logs")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    with log_context(frame_id="f-1", line="line-1", camera="cam-1-1"):
        log.warning("tile chunk without %s", "tiles", extra={"reason": "bad_tensor"})
    log.info("outside")
    return buf.getvalue()


def test_json_log_lines_carry_service_line_camera_frame():
    first, second = _log_with(JsonFormatter("inference")).splitlines()
    a, b = json.loads(first), json.loads(second)
    assert a["service"] == "inference" and a["level"] == "WARNING"
    assert (a["line"], a["camera"], a["frame_id"], a["reason"]) == (
        "line-1",
        "cam-1-1",
        "f-1",
        "bad_tensor",
    )
    assert a["message"] == "tile chunk without tiles"
    assert "frame_id" not in b and b["message"] == "outside"  # the context ended


def test_human_log_lines_on_a_terminal():
    first, _ = _log_with(HumanFormatter("inference")).splitlines()
    assert "WARNING inference line-1/cam-1-1 frame f-1: tile chunk without tiles" in first
    assert "reason=bad_tensor" in first
    with pytest.raises(json.JSONDecodeError):
        json.loads(first)


def test_up_status_line_reads_the_services_counters():
    from prometheus_client.parser import text_string_to_metric_families

    from services.cli.status import Status

    text = """
# TYPE defectflow_frames_accepted_total counter
defectflow_frames_accepted_total{line="line-1",camera="cam-1-1"} 40
defectflow_frames_accepted_total{line="line-2",camera="cam-2-1"} 38
# TYPE defectflow_db_rows_written_total counter
defectflow_db_rows_written_total 70
# TYPE defectflow_verdicts_total counter
defectflow_verdicts_total{line="line-1",recipe="r",verdict="ok"} 60
defectflow_verdicts_total{line="line-1",recipe="r",verdict="ng"} 7
defectflow_verdicts_total{line="line-2",recipe="r",verdict="review"} 3
# TYPE defectflow_consumer_lag_messages gauge
defectflow_consumer_lag_messages{stage="tiling",topic="t",partition="0"} 2
defectflow_consumer_lag_messages{stage="tiling",topic="t",partition="1"} 3
# TYPE defectflow_score_drift_ks gauge
defectflow_score_drift_ks{line="line-1",recipe="r"} 0.61
"""
    samples = [
        (s.name, dict(s.labels), s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]
    st = Status.from_samples(samples)
    assert (st.frames_in, st.stored, st.ng, st.review) == (78, 70, 7, 3)
    assert st.lag == {"tiling": 5}
    assert st.line().endswith("lag tiling~5 | drift line-1 0.61")
