from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.common.config import StageSettings


class TilingSettings(StageSettings):
    model_config = SettingsConfigDict(env_prefix="DEFECTFLOW_TILING_", frozen=True, extra="ignore")
