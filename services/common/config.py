"""Settings every service shares; each service adds its own with env prefix DEFECTFLOW_<NAME>_."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StageSettings(BaseSettings):
    """Kafka, blob store and metrics settings of one stage (frozen once loaded)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    blob_root: Path = Path("var/blobs")
    recipes_dir: Path = Path("var/recipes")
    metrics_port: int = 0  # 0 = no /metrics endpoint
    metrics_addr: str = "127.0.0.1"  # 0.0.0.0 in a pod, so Prometheus can scrape it
    poll_timeout_ms: int = 200
    busy_poll_ms: int = 5  # while the handler has work out (inference's jobs at Triton)
    max_poll_records: int = 64
    session_timeout_ms: int = 6000  # Tansu's first join waits ~half of this
    # how long the broker may hold a fetch that has no data yet: every hop's latency floor
    # (measured on Tansu, docs/benchmarks.md: 500 ms -> 131 ms p50 per hop, 20 ms -> 10 ms);
    # 50 ms keeps idle consumers from spinning on 2 cores
    fetch_max_wait_ms: int = Field(50, ge=1, le=500)
    # SIGTERM: finish the batch in hand within this, else exit without committing it
    # (keep it below the pod's terminationGracePeriodSeconds)
    shutdown_timeout_s: float = 20.0
    instance: str = ""  # pod/host name, stamped on messages
    log_level: str = "INFO"


def loopback_host(host: str) -> bool:
    """Whether a bind host (an IP address, or "localhost") reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
