"""Reading a service's /metrics page in tests, with the same parser as `defectflow up`."""

from __future__ import annotations

from services.cli.status import scrape


def metric_sum(url: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`; -1 while the page
    does not answer (a wait for a count never takes that for a value)."""
    try:
        samples = scrape(url, timeout_s=5.0)
    except OSError:
        return -1.0
    return sum(
        value
        for sample, have, value in samples
        if sample == name and all(have.get(k) == v for k, v in labels.items())
    )
