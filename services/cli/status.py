"""What `defectflow up` shows: frames in, records stored, NG/REVIEW, per-stage lag, drift.

The figures are read from the services' own /metrics endpoints, the same counters that
Prometheus scrapes and the dashboard shows, so the status line and the dashboard agree.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, dict[str, str], float]


def scrape(url: str, timeout_s: float = 1.0) -> list[Sample]:
    """All samples of one /metrics endpoint; raises OSError when it does not answer."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        text = resp.read().decode()
    return [
        (s.name, dict(s.labels), float(s.value))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def scrape_all(urls: Mapping[str, str], last: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
    """Scrape every service; one that does not answer (stopped, restarting, or a bounded
    ingest that finished) keeps its last samples."""
    for service, url in urls.items():
        with contextlib.suppress(OSError):  # keeps the last samples
            last[service] = scrape(url)
    return last


@dataclass(frozen=True)
class Status:
    frames_in: int
    stored: int
    ng: int
    review: int
    lag: dict[str, int]
    drift: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_samples(cls, samples: Iterable[Sample]) -> Status:
        total: dict[str, float] = defaultdict(float)
        lag: dict[str, float] = defaultdict(float)
        drift: dict[str, float] = {}
        for name, labels, value in samples:
            if name == "defectflow_frames_accepted_total":
                total["frames"] += value
            elif name == "defectflow_db_rows_written_total":
                total["stored"] += value
            elif name == "defectflow_verdicts_total":
                total[labels.get("verdict", "")] += value
            elif name == "defectflow_consumer_lag_messages":
                lag[labels.get("stage", "?")] += value
            elif name == "defectflow_score_drift_ks":
                drift[labels.get("line", "?")] = max(value, drift.get(labels.get("line", "?"), 0))
        return cls(
            int(total["frames"]),
            int(total["stored"]),
            int(total["ng"]),
            int(total["review"]),
            {k: int(v) for k, v in sorted(lag.items())},
            dict(sorted(drift.items())),
        )

    def line(self) -> str:
        lag = " ".join(f"{stage}~{n}" for stage, n in self.lag.items())
        text = (
            f"frames in {self.frames_in:6d} | stored {self.stored:6d} | NG {self.ng:5d} | "
            f"REVIEW {self.review:4d} | lag {lag or '-'}"
        )
        if self.drift:
            text += " | drift " + " ".join(f"{ln} {ks:.2f}" for ln, ks in self.drift.items())
        return text
