"""inspections and defects

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inspections",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("frame_id", sa.String(64), nullable=False, unique=True),
        sa.Column("part_id", sa.String(128), nullable=False),
        sa.Column("line", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("camera", sa.String(64), nullable=False),
        sa.Column("captured_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("stored_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("recipe_id", sa.String(64), nullable=False),
        sa.Column("recipe_version", sa.Integer, nullable=False),
        sa.Column("model_versions", JSONB, nullable=False),
        sa.Column("verdict", sa.SmallInteger, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("latency_s", sa.Float, nullable=False),
        sa.Column("image_uri", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_inspections_line_captured", "inspections", ["line", "captured_unix_ns"])
    op.create_index(
        "ix_inspections_verdict_captured", "inspections", ["verdict", "captured_unix_ns"]
    )
    op.create_index("ix_inspections_part", "inspections", ["part_id"])
    op.create_table(
        "defects",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "inspection_id",
            sa.BigInteger,
            sa.ForeignKey("inspections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("defect_class", sa.String(64), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("x0", sa.Float, nullable=False),
        sa.Column("y0", sa.Float, nullable=False),
        sa.Column("x1", sa.Float, nullable=False),
        sa.Column("y1", sa.Float, nullable=False),
        sa.Column("area_px", sa.Float, nullable=False),
        sa.Column("area_mm2", sa.Float, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
    )
    op.create_index("ix_defects_inspection", "defects", ["inspection_id"])
    op.create_index("ix_defects_class", "defects", ["defect_class"])


def downgrade() -> None:
    op.drop_table("defects")
    op.drop_table("inspections")
