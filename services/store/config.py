from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.config import StageSettings


class StoreSettings(StageSettings):
    model_config = SettingsConfigDict(env_prefix="DEFECTFLOW_STORE_", frozen=True, extra="ignore")

    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/defectflow"
    grpc_address: str = "127.0.0.1:50051"
    max_poll_records: int = 500
    db_retry_max_s: float = 30.0  # back-off ceiling while PostgreSQL is down
    max_page_size: int = 1000
