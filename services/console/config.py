from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.config import loopback_host


class ConsoleSettings(BaseSettings):
    """The operator console: a web app over the store's gRPC query API (no database access)."""

    model_config = SettingsConfigDict(env_prefix="DEFECTFLOW_CONSOLE_", frozen=True, extra="ignore")

    query_target: str = "127.0.0.1:50051"  # the store's InspectionQuery API
    tls_ca_file: Path | None = None  # connect to the API with TLS, verified against this CA
    host: str = "127.0.0.1"
    port: int = 8080
    # review queue: REVIEW verdicts first, then this fraction of OK and NG for audit
    audit_sample: float = 0.02
    page_size: int = 24  # gallery and queue cards per page
    live_window_s: float = 600.0  # the lines overview counts records captured this long ago
    live_backfill_max: int = 5000  # at most this many records read to start the overview
    max_export_rows: int = 100_000
    session_hours: float = 12.0
    call_timeout_s: float = 10.0
    # the session cookie only over HTTPS; unset: on unless the console binds to loopback
    # (the local demo over plain http); browsers treat http://localhost as secure anyway
    secure_cookies: bool | None = None
    metrics_port: int = 0  # Prometheus /metrics (process metrics); 0 = none
    metrics_addr: str = "127.0.0.1"  # 0.0.0.0 in a pod, so Prometheus can scrape it
    log_level: str = "INFO"

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return not loopback_host(self.host)
