from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.config import StageSettings


class InferenceSettings(StageSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEFECTFLOW_INFERENCE_", frozen=True, extra="ignore"
    )

    triton_url: str = "127.0.0.1:8001"
    max_in_flight: int = 8  # concurrent Triton requests of one job (DESIGN.md: >= 8 on 2 cores)
    max_jobs: int = 4  # polls' worth of tiles at Triton at once, while the stage polls on
    request_timeout_s: float = 30.0
    retries: int = 3  # per batch, with backoff, before the batch is redone
    max_poll_records: int = 16
