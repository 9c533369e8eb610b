"""Topic creation, used by `defectflow up`, the test fixtures and the benchmarks."""

from __future__ import annotations

import contextlib
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from services.common import topics


def ensure_topics(
    bootstrap: str,
    partitions: int = 4,
    names: tuple[str, ...] = topics.ALL,
    timeout_s: float = 20.0,
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            break
        except Exception:  # noqa: BLE001 - broker still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()
