"""query API: store order (tx_id), processed time, inline images, image retention,
defect contours, indices for the MES filters and statistics

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "inspections",
        sa.Column(
            "tx_id",
            sa.BigInteger,
            nullable=False,
            server_default=sa.text("(pg_current_xact_id()::text::bigint)"),
        ),
    )
    op.add_column(
        "inspections",
        sa.Column("processed_unix_ns", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column("inspections", sa.Column("image_data", sa.LargeBinary, nullable=True))
    op.add_column(
        "inspections",
        sa.Column("image_purged", sa.Boolean, nullable=False, server_default="false"),
    )
    op.add_column("defects", sa.Column("contour", JSONB, nullable=False, server_default="[]"))
    op.create_index("ix_inspections_order", "inspections", ["tx_id", "id"])
    op.create_index("ix_inspections_captured", "inspections", ["captured_unix_ns"])
    op.create_index(
        "ix_inspections_model_versions",
        "inspections",
        ["model_versions"],
        postgresql_using="gin",
        postgresql_ops={"model_versions": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_inspections_image_kept",
        "inspections",
        ["captured_unix_ns"],
        postgresql_where=sa.text("NOT image_purged"),
    )
    op.drop_index("ix_defects_class", table_name="defects")
    op.create_index("ix_defects_class_inspection", "defects", ["defect_class", "inspection_id"])


def downgrade() -> None:
    op.drop_index("ix_defects_class_inspection", table_name="defects")
    op.create_index("ix_defects_class", "defects", ["defect_class"])
    op.drop_index("ix_inspections_image_kept", table_name="inspections")
    op.drop_index("ix_inspections_model_versions", table_name="inspections")
    op.drop_index("ix_inspections_captured", table_name="inspections")
    op.drop_index("ix_inspections_order", table_name="inspections")
    op.drop_column("defects", "contour")
    for col in ("image_purged", "image_data", "processed_unix_ns", "tx_id"):
        op.drop_column("inspections", col)
