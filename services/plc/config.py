from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from services.common.config import StageSettings


class PlcSettings(StageSettings):
    model_config = SettingsConfigDict(env_prefix="DEFECTFLOW_PLC_", frozen=True, extra="ignore")

    endpoint: str = "opc.tcp://127.0.0.1:4840/defectflow/"
    namespace: str = "urn:defectflow:plc"
    # which cameras view each station (the views a part's verdict waits for) and which
    # stations follow the PLC: the same cameras file ingest reads, re-read when it changes
    cameras_path: Path = Path("cameras.yaml")
    deadline_s: float = 2.0  # after the trigger: no verdict by then -> the fail-safe
    window_s: float = 1.0  # after a part's first view: views still missing -> REVIEW
    fail_safe: str = "NG"  # NG | REVIEW, written when the deadline passes
    publishing_ms: float = 0.0  # OPC UA subscription publishing interval (0: at once)
    request_timeout_s: float = 0.5  # one write; a PLC slower than this is "not answering"
    poll_timeout_ms: int = 20  # the loop checks deadlines at least this often
    orphan_grace_s: float = 2.0  # an inspection whose trigger was never seen is dropped then
