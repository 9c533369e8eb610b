"""Prometheus metrics every stage exports (defectflow_ prefix, base units, bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

MESSAGES_IN = Counter("defectflow_messages_in_total", "Messages consumed", ["stage"])
MESSAGES_OUT = Counter("defectflow_messages_out_total", "Messages produced", ["stage", "topic"])
DEAD_LETTERS = Counter(
    "defectflow_dead_letters_total", "Messages sent to the DLQ", ["stage", "reason"]
)
TRANSIENT_FAILURES = Counter(
    "defectflow_transient_failures_total", "Batches redone after a dependency failed", ["stage"]
)
STAGE_SECONDS = Histogram(
    "defectflow_stage_processing_seconds",
    "Time to process one poll batch",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def serve(port: int) -> None:
    if port > 0:
        start_http_server(port, addr="127.0.0.1")
