"""`defectflow db`: the results store's schema and retention, run by hand."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
import typer

app = typer.Typer(help="Results store (PostgreSQL): migrations and retention.")

URL = typer.Option(
    ...,
    "--url",
    envvar="DEFECTFLOW_STORE_DATABASE_URL",
    help="SQLAlchemy URL, e.g. postgresql+psycopg2://user@host:5432/defectflow",
)


@app.command()
def upgrade(url: str = URL) -> None:
    """Apply the alembic migrations up to the newest (the store also does this at start-up)."""
    from alembic.runtime.migration import MigrationContext

    from services.store.adapters import db

    engine = sa.create_engine(url)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            typer.echo(
                f"schema at revision {MigrationContext.configure(conn).get_current_revision()}"
            )
    except sa.exc.OperationalError as exc:
        typer.echo(f"error: cannot reach the database: {str(exc).splitlines()[0]}", err=True)
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()


@app.command()
def retention(
    url: str = URL,
    records_ok_days: float = typer.Option(0.0, help="delete OK records older; 0 = keep"),
    records_ng_days: float = typer.Option(0.0, help="delete NG/REVIEW records older; 0 = keep"),
    images_ok_days: float = typer.Option(0.0, help="delete OK images older; 0 = keep"),
    images_ng_days: float = typer.Option(0.0, help="delete NG/REVIEW images older; 0 = keep"),
    blob_root: Path = typer.Option(Path("var/blobs"), envvar="DEFECTFLOW_STORE_BLOB_ROOT"),
) -> None:
    """Apply a retention policy once (the store service applies its own periodically)."""
    from services.common.blobstore import LocalBlobStore
    from services.store.adapters import db
    from services.store.logic import RetentionPolicy

    policy = RetentionPolicy(
        records_ok_days, records_ng_days, images_ok_days, images_ng_days
    ).check()
    engine = sa.create_engine(url)
    try:
        n_rec, n_img = db.apply_retention(engine, policy, time.time_ns(), LocalBlobStore(blob_root))
    finally:
        engine.dispose()
    typer.echo(f"deleted {n_rec} records and {n_img} images")
