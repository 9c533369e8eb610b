from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.config import StageSettings


class IngestSettings(StageSettings):
    model_config = SettingsConfigDict(env_prefix="DEFECTFLOW_INGEST_", frozen=True, extra="ignore")

    source: str = "synthetic"  # "synthetic" | "folder" | "video"
    source_path: Path | None = None  # folder of images or a video file
    lines: int = 2
    cameras_per_line: int = 2
    fps: float = 2.0  # per camera
    frames: int = 0  # per camera; 0 = until stopped
    family: str = "brushed_metal"
    recipe_id: str = "brushed-metal"  # for lines the line-recipe file does not name
    line_recipes_path: Path | None = None  # YAML line -> recipe id; changeover at runtime
    defect_rate: float = 0.3
    defect_types: str = "scratch,spot,hole,contamination,crack"
    width: int = 512
    height: int = 512
    seed: int = 0
    # synthetic cameras only: render this many parts per camera, then repeat them (0 = a new
    # part every frame); benchmarks use it so the load generator costs what a camera does
    synthetic_pool: int = 0
    inline_max_bytes: int = 64 * 1024  # larger images go to the blob store (claim check)
    takt_s: float = 0.0  # a part's verdict is due this long after capture; 0 = 1 / fps
    # synthetic cameras only: the lamp of these lines (comma list, empty = all) changes to
    # `illumination_gain` and the lens defocuses by `defocus_sigma` px after
    # `illumination_after` parts (drift monitoring tests, demos; recipes with flat-field
    # illumination divide a lamp change out, a defocus they cannot)
    illumination_gain: float = 1.0
    defocus_sigma: float = Field(0.0, ge=0.0)
    illumination_after: int = 0
    illumination_lines: str = ""
    max_lag_frames: int = 2  # drop policy: skip capture ticks when further behind
    ground_truth_path: Path | None = None  # accepted log: one JSON line per accepted frame
    spool_dir: Path | None = Path("var/ingest-spool")  # write-ahead spool, one per replica
    # cameras file (docs/cameras.md): when set, ingest reads the cameras it lists (GigE
    # Vision, RTSP, USB, ...) instead of `source`, and follows changes to it at runtime
    cameras_path: Path | None = None
    plc_endpoint: str = ""  # OPC UA; the file's plc_stations capture on the PLC's part ids
    plc_namespace: str = "urn:defectflow:plc"
    plc_publishing_ms: float = 0.0
