"""PostgreSQL access: migrations, idempotent batch writes, queries."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects.postgresql import insert

from services.store.adapters.schema import defects, inspections

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def upgrade(engine: sa.Engine) -> None:
    """Apply all alembic migrations (the store runs this at start-up)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def write_batch(engine: sa.Engine, rows: Sequence[dict], defect_rows: Sequence[list[dict]]) -> int:
    """Insert inspections (ON CONFLICT (frame_id) DO NOTHING) and their defects in one
    transaction; returns how many were new. A redelivered inspection changes nothing."""
    if not rows:
        return 0
    with engine.begin() as conn:
        stmt = (
            insert(inspections)
            .values(list(rows))
            .on_conflict_do_nothing(index_elements=["frame_id"])
            .returning(inspections.c.id, inspections.c.frame_id)
        )
        new = {fid: iid for iid, fid in conn.execute(stmt)}
        children = [
            {**d, "inspection_id": new[row["frame_id"]]}
            for row, ds in zip(rows, defect_rows, strict=True)
            if row["frame_id"] in new
            for d in ds
        ]
        if children:
            conn.execute(insert(defects), children)
    return len(new)


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": row_id}).encode()).decode()


def decode_cursor(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["after"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"invalid page_token {token!r}") from exc
