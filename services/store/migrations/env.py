from alembic import context
from sqlalchemy import engine_from_config, pool

from services.store.adapters.schema import metadata


def run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


config = context.config
given = config.attributes.get("connection")
if given is not None:
    run(given)  # the caller owns the connection and its transaction
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.begin() as conn:
        run(conn)
