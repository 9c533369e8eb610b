"""reviews: human dispositions (OK / NG, defect class, comment, who, when) beside the
machine verdict, which they never change

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "inspection_id",
            sa.BigInteger,
            sa.ForeignKey("inspections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("disposition", sa.SmallInteger, nullable=False),
        sa.Column("defect_class", sa.String(64), nullable=False, server_default=""),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("reviewer_role", sa.String(16), nullable=False),
        sa.Column("reviewed_unix_ns", sa.BigInteger, nullable=False),
        sa.Column("machine_verdict", sa.SmallInteger, nullable=False),
        sa.Column("machine_score", sa.Float, nullable=False),
        sa.CheckConstraint("disposition in (1, 2)", name="ck_reviews_disposition"),
    )
    op.create_index("ix_reviews_inspection", "reviews", ["inspection_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_reviews_inspection", table_name="reviews")
    op.drop_table("reviews")
