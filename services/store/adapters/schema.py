"""Tables of the results store (SQLAlchemy 2). Migrations in services/store/migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

inspections = Table(
    "inspections",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),  # cursor for pagination
    Column("frame_id", String(64), nullable=False, unique=True),  # idempotency key
    Column("part_id", String(128), nullable=False, default=""),
    Column("line", String(64), nullable=False),
    Column("station", String(64), nullable=False),
    Column("camera", String(64), nullable=False),
    Column("captured_unix_ns", BigInteger, nullable=False),
    Column("stored_unix_ns", BigInteger, nullable=False),
    Column("recipe_id", String(64), nullable=False),
    Column("recipe_version", Integer, nullable=False),
    Column("model_versions", JSONB, nullable=False),
    Column("verdict", SmallInteger, nullable=False),  # defectflow.v1.Verdict
    Column("score", Float, nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("latency_s", Float, nullable=False),  # capture -> postprocess done
    Column("image_uri", Text, nullable=False, default=""),
    Column("payload", LargeBinary, nullable=False),  # the Inspection protobuf
    Index("ix_inspections_line_captured", "line", "captured_unix_ns"),
    Index("ix_inspections_verdict_captured", "verdict", "captured_unix_ns"),
    Index("ix_inspections_part", "part_id"),
)

defects = Table(
    "defects",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "inspection_id",
        BigInteger,
        ForeignKey("inspections.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("defect_class", String(64), nullable=False),
    Column("score", Float, nullable=False),
    Column("x0", Float, nullable=False),
    Column("y0", Float, nullable=False),
    Column("x1", Float, nullable=False),
    Column("y1", Float, nullable=False),
    Column("area_px", Float, nullable=False),
    Column("area_mm2", Float, nullable=False),
    Column("source", String(32), nullable=False),
    Index("ix_defects_inspection", "inspection_id"),
    Index("ix_defects_class", "defect_class"),
)
