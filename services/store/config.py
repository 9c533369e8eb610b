from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.common.config import StageSettings


class StoreSettings(StageSettings):
    model_config = SettingsConfigDict(env_prefix="DEFECTFLOW_STORE_", frozen=True, extra="ignore")

    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/defectflow"
    grpc_address: str = "127.0.0.1:50051"
    grpc_workers: int = 32
    max_watch_streams: int = 16  # each stream holds a worker thread; beyond: RESOURCE_EXHAUSTED
    max_poll_records: int = 500
    db_retry_max_s: float = 30.0  # back-off ceiling while PostgreSQL is down
    max_page_size: int = 1000
    max_page_bytes: int = 3 * 1024 * 1024  # under gRPC's default 4 MiB client receive limit
    watch_poll_s: float = 1.0  # re-read even without a NOTIFY (a missed one costs this long)
    watch_heartbeat_s: float = 10.0  # a cursor-only message on a quiet stream
    max_image_pixels: int = 64 * 1024 * 1024

    # auth: entries `name:role:token` (role read | reviewer | admin), comma separated,
    # and/or a file with one entry per line (a mounted secret; re-read when it changes).
    # Without either the API refuses to start, unless open_api is set and grpc_address is
    # a loopback address (the local demo): then every caller is admin.
    tokens: str = ""
    tokens_file: Path | None = None
    open_api: bool = False
    # TLS: both paths, or neither; a client CA also requires client certificates (mTLS)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None

    # statistics: local time for hour/day/shift boundaries
    stats_time_zone: str = "UTC"
    shift_starts: str = "06:00,14:00,22:00"

    # retention in days by capture time, 0 = keep forever; NG and REVIEW kept longer than OK
    retention_records_ok_days: float = 0.0
    retention_records_ng_days: float = 0.0
    retention_images_ok_days: float = 0.0
    retention_images_ng_days: float = 0.0
    retention_interval_s: float = 3600.0
