"""Prometheus metrics of every defectflow service, defined once.

Conventions (https://prometheus.io/docs/practices/naming/): `defectflow_` prefix, base
units (`_seconds`, `_bytes`), `_total` on counters. Labels are bounded sets only: stage,
topic, partition, line, camera, recipe, model, verdict, defect class, reason. Never a
frame id or part id: one series per frame would grow without bound.

Each service serves its own `/metrics` (`DEFECTFLOW_<NAME>_METRICS_PORT`, bound to
`DEFECTFLOW_<NAME>_METRICS_ADDR`: 127.0.0.1 on one machine, 0.0.0.0 in a pod). The alert
rules and the dashboard under monitoring/ use these names; tests/unit/test_metrics.py
checks the conventions and that every name the rules use exists.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# frame -> record takes seconds on CPU and tens of ms on GPU: one scale for both
LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    15.0,
    20.0,
    30.0,
    60.0,
)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# --- the stage loop (services/common/stage.py): every Kafka stage ------------------------
MESSAGES_IN = Counter("defectflow_messages_in_total", "Records consumed", ["stage"])
MESSAGES_OUT = Counter(
    "defectflow_messages_out_total",
    "Records produced and acknowledged by the broker (dead letters not included)",
    ["stage", "topic"],
)
MESSAGES_FAILED = Counter(
    "defectflow_messages_failed_total",
    "Input records that failed: kind=dead_letter (sent to the DLQ) or kind=transient "
    "(redone after a dependency failed)",
    ["stage", "kind"],
)
DEAD_LETTERS = Counter(
    "defectflow_dead_letters_total", "Records sent to the dead-letter topic", ["stage", "reason"]
)
TRANSIENT_FAILURES = Counter(
    "defectflow_transient_failures_total", "Batches redone after a dependency failed", ["stage"]
)
STAGE_SECONDS = Histogram(
    "defectflow_stage_processing_seconds",
    "Time to handle, publish and commit one poll batch",
    ["stage"],
    buckets=FAST_BUCKETS,
)
IN_FLIGHT = Gauge(
    "defectflow_inflight_messages",
    "Records read but not yet done (postprocess: tiles of frames still being assembled)",
    ["stage"],
)
CONSUMER_LAG = Gauge(
    "defectflow_consumer_lag_messages",
    "End offset minus committed offset of an assigned partition. Exact on Apache Kafka; "
    "against Tansu (the local broker) the end offset is the first offset of the last batch "
    "+ 1, so the lag shown can be short by up to one batch",
    ["stage", "topic", "partition"],
)

# --- per frame, from the per-stage timestamps on the messages (observed by store) --------
FRAME_TO_RECORD = Histogram(
    "defectflow_frame_to_record_seconds",
    "Frame captured (ingest) to its inspection record written in the database",
    ["line"],
    buckets=LATENCY_BUCKETS,
)
FRAME_STAGE = Histogram(
    "defectflow_frame_stage_seconds",
    "Where a frame's time goes: phase=process is received-to-sent inside a stage, "
    "phase=queue the wait between the previous stage's send and this stage's receive",
    ["stage", "phase"],
    buckets=LATENCY_BUCKETS,
)

# --- ingest --------------------------------------------------------------------------------
# frames accepted / dropped by the camera policy: services/ingest/main.py
LINE_TAKT = Gauge(
    "defectflow_line_takt_seconds",
    "A line's takt time: a part's verdict is due within this time of capture",
    ["line"],
)

# --- inference -----------------------------------------------------------------------------
BATCH_SIZE = Histogram(
    "defectflow_inference_batch_size",
    "Tiles per Triton request",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
TRITON_SECONDS = Histogram(
    "defectflow_triton_request_seconds",
    "Triton inference request, sent to answer received (client side)",
    ["model"],
    buckets=FAST_BUCKETS,
)

# --- postprocess ---------------------------------------------------------------------------
VERDICTS = Counter(
    "defectflow_verdicts_total", "Inspection verdicts", ["line", "recipe", "verdict"]
)
DEFECTS = Counter("defectflow_defects_total", "Defects found", ["line", "recipe", "defect_class"])
DRIFT_KS = Gauge(
    "defectflow_score_drift_ks",
    "Two-sample Kolmogorov-Smirnov statistic between the last image scores of a line and "
    "recipe and the scores recorded at calibration (0 = same distribution, 1 = disjoint)",
    ["line", "recipe"],
)
DRIFT_PSI = Gauge(
    "defectflow_score_drift_psi",
    "Population stability index of the last image scores of a line and recipe against the "
    "calibration scores (quantile bins of the calibration distribution)",
    ["line", "recipe"],
)
DRIFT_WINDOW = Gauge(
    "defectflow_score_drift_window_scores",
    "Image scores in the drift window of a line and recipe (the statistics are noisy until "
    "the window is full)",
    ["line", "recipe"],
)

# --- store ---------------------------------------------------------------------------------
ROWS_WRITTEN = Counter(
    "defectflow_db_rows_written_total", "Inspection rows inserted (redeliveries excluded)"
)
DB_DUPLICATES = Counter(
    "defectflow_db_duplicates_total", "Redelivered inspections the database already held"
)
DB_WRITE_SECONDS = Histogram(
    "defectflow_db_write_seconds",
    "One batch write transaction (inspections and their defects)",
    buckets=FAST_BUCKETS,
)

VERDICT_LABELS = {1: "ok", 2: "ng", 3: "review"}  # domain.Verdict values


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Serve /metrics on addr:port; port 0 serves nothing."""
    if port > 0:
        start_http_server(port, addr=addr)


def stage_spans(
    stamps: Sequence[tuple[str, int, int]], captured_ns: int
) -> list[tuple[str, str, float]]:
    """(stage, phase, seconds) of one frame from its stamps (stage, received_ns, sent_ns) in
    path order: phase "process" inside each stage and "queue" between a stage's send (or
    the capture) and the next stage's receive. Negative spans (clock steps between hosts)
    become 0."""
    spans = []
    previous = captured_ns
    for stage, received, sent in stamps:
        if stage != "ingest":  # ingest's receive is the capture itself
            spans.append((stage, "queue", max(0.0, (received - previous) / 1e9)))
        spans.append((stage, "process", max(0.0, (sent - received) / 1e9)))
        previous = sent
    return spans


def observe_frame(
    line: str,
    stamps: Sequence[tuple[str, int, int]],
    captured_ns: int,
    recorded_ns: int,
) -> None:
    """One stored frame: frame->record latency and where its time went."""
    FRAME_TO_RECORD.labels(line).observe(max(0.0, (recorded_ns - captured_ns) / 1e9))
    for stage, phase, seconds in stage_spans(stamps, captured_ns):
        FRAME_STAGE.labels(stage, phase).observe(seconds)
    if stamps:
        FRAME_STAGE.labels("store", "queue").observe(max(0.0, (recorded_ns - stamps[-1][2]) / 1e9))


def set_lag(stage: str, lag: Iterable[tuple[str, int, int]], gone: Iterable[tuple[str, int]]):
    """Consumer lag gauges: (topic, partition, lag) for assigned partitions; series of
    partitions no longer assigned are removed (another replica reports them)."""
    for topic, partition in gone:
        with contextlib.suppress(KeyError):  # never set: nothing to remove
            CONSUMER_LAG.remove(stage, topic, str(partition))
    for topic, partition, n in lag:
        CONSUMER_LAG.labels(stage, topic, str(partition)).set(max(0, n))
