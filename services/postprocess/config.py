from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.config import StageSettings


class PostprocessSettings(StageSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEFECTFLOW_POSTPROCESS_", frozen=True, extra="ignore"
    )

    max_pending_frames: int = 512  # bound on frames waiting for tiles (memory stays flat)
