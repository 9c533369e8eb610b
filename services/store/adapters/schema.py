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
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB

# The writing transaction's id (xid8 as bigint). Cursors order by (tx_id, id) and read
# only below the oldest transaction still running, so a transaction that commits late
# can never land behind a cursor a reader already holds (see adapters/db.py).
TX_ID_DEFAULT = sql_text("(pg_current_xact_id()::text::bigint)")

metadata = MetaData()

inspections = Table(
    "inspections",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("tx_id", BigInteger, nullable=False, server_default=TX_ID_DEFAULT),
    Column("frame_id", String(64), nullable=False, unique=True),  # idempotency key
    Column("part_id", String(128), nullable=False, default=""),
    Column("line", String(64), nullable=False),
    Column("station", String(64), nullable=False),
    Column("camera", String(64), nullable=False),
    Column("captured_unix_ns", BigInteger, nullable=False),
    Column("stored_unix_ns", BigInteger, nullable=False),
    Column("processed_unix_ns", BigInteger, nullable=False, server_default="0"),
    Column("recipe_id", String(64), nullable=False),
    Column("recipe_version", Integer, nullable=False),
    Column("model_versions", JSONB, nullable=False),
    Column("verdict", SmallInteger, nullable=False),  # defectflow.v1.Verdict
    Column("score", Float, nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("latency_s", Float, nullable=False),  # capture -> postprocess done
    Column("image_uri", Text, nullable=False, default=""),
    Column("image_data", LargeBinary, nullable=True),  # inline image, kept out of payload
    Column("image_purged", Boolean, nullable=False, server_default="false"),
    Column("payload", LargeBinary, nullable=False),  # the Inspection protobuf, no inline image
    Index("ix_inspections_line_captured", "line", "captured_unix_ns"),
    Index("ix_inspections_verdict_captured", "verdict", "captured_unix_ns"),
    Index("ix_inspections_part", "part_id"),
    Index("ix_inspections_order", "tx_id", "id"),
    Index("ix_inspections_captured", "captured_unix_ns"),
    Index(
        "ix_inspections_model_versions",
        "model_versions",
        postgresql_using="gin",
        postgresql_ops={"model_versions": "jsonb_path_ops"},
    ),
    Index(
        "ix_inspections_image_kept",
        "captured_unix_ns",
        postgresql_where=sql_text("NOT image_purged"),
    ),
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
    Column("contour", JSONB, nullable=False, server_default="[]"),  # [[x, y], ...] frame px
    Index("ix_defects_inspection", "inspection_id"),
    Index("ix_defects_class_inspection", "defect_class", "inspection_id"),
)

# Human dispositions, beside the machine verdict (never overwriting it); the latest counts.
reviews = Table(
    "reviews",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "inspection_id",
        BigInteger,
        ForeignKey("inspections.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("disposition", SmallInteger, nullable=False),  # defectflow.v1.Verdict OK / NG
    Column("defect_class", String(64), nullable=False, server_default=""),
    Column("comment", Text, nullable=False, server_default=""),
    Column("reviewer", String(128), nullable=False),
    Column("reviewer_role", String(16), nullable=False),
    Column("reviewed_unix_ns", BigInteger, nullable=False),
    Column("machine_verdict", SmallInteger, nullable=False),
    Column("machine_score", Float, nullable=False),
    Index("ix_reviews_inspection", "inspection_id", "id"),
)
