"""What `defectflow up` shows: frames in, records stored, NG count, per-stage lag."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from kafka import KafkaAdminClient, KafkaConsumer

from services.common import topics


@dataclass(frozen=True)
class Status:
    frames_in: int
    stored: int
    ng: int
    review: int
    lag: dict[str, int]

    def line(self) -> str:
        lag = " ".join(f"{g.removeprefix('defectflow-')}~{n}" for g, n in self.lag.items())
        return (
            f"frames in {self.frames_in:6d} | stored {self.stored:6d} | NG {self.ng:5d} | "
            f"REVIEW {self.review:4d} | lag {lag}"
        )


def consumer_lag(bootstrap: str) -> dict[str, int]:
    """Per consumer group: end offset minus committed offset, summed over partitions.

    Approximate against Tansu (its end offsets can be short by up to one batch);
    exact on Apache Kafka.
    """
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        lag = {}
        for topic, group in topics.GROUPS.items():
            committed = admin.list_group_offsets(group).get(group, {})
            parts = [tp for tp in committed if tp.topic == topic]
            ends = probe.end_offsets(parts) if parts else {}
            lag[group] = sum(max(0, ends[tp] - committed[tp].offset) for tp in parts)
        return lag
    finally:
        admin.close()
        probe.close()


def db_counts(engine: sa.Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select verdict, count(*) from inspections group by verdict")
        ).all()
    counts = {int(v): int(n) for v, n in rows}
    return sum(counts.values()), counts.get(2, 0), counts.get(3, 0)
