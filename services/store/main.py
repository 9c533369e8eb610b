"""Store: inspections -> PostgreSQL (idempotent), and the MES query API over gRPC."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import sqlalchemy as sa
from defectflow.v1 import inspections_pb2
from kafka.consumer.fetcher import ConsumerRecord

from services.common import topics
from services.common.codec import decode
from services.common.errors import BadInput, Transient
from services.common.logs import setup_logging
from services.common.metrics import serve
from services.common.stage import Handled, StageRunner, StatelessHandler, dead_letter
from services.store.adapters import db, grpc_api
from services.store.config import StoreSettings
from services.store.logic import inspection_row

log = logging.getLogger("defectflow.store")


class StoreHandler(StatelessHandler):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def handle(self, records: Sequence[ConsumerRecord]) -> Handled:
        out = Handled(done=list(records))
        rows, children, seen = [], [], set()
        now = time.time_ns()
        for record in records:
            try:
                msg = decode(inspections_pb2.Inspection, record.value)
            except BadInput as err:
                out.outputs.append(dead_letter("store", record, err))
                continue
            if msg.context.frame_id in seen:  # duplicate within one batch
                continue
            seen.add(msg.context.frame_id)
            row, ds = inspection_row(msg, record.value, now)
            rows.append(row)
            children.append(ds)
        try:
            db.write_batch(self.engine, rows, children)
        except sa.exc.OperationalError as exc:
            raise Transient(
                f"PostgreSQL unavailable, batch of {len(rows)} kept for retry: {exc}"
            ) from exc
        return out


def wait_for_database(engine: sa.Engine, max_wait_s: float) -> None:
    delay = 0.5
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            return
        except sa.exc.OperationalError as exc:
            log.warning("waiting for PostgreSQL: %s", str(exc).splitlines()[0])
            time.sleep(delay)
            delay = min(delay * 2, max_wait_s)


def main() -> None:
    settings = StoreSettings()
    setup_logging("store", settings.log_level)
    serve(settings.metrics_port)
    engine = sa.create_engine(settings.database_url, pool_pre_ping=True)
    wait_for_database(engine, settings.db_retry_max_s)
    db.upgrade(engine)
    server, port = grpc_api.serve(engine, settings.grpc_address, settings.max_page_size)
    log.info("query API listening on port %d", port)
    runner = StageRunner("store", topics.INSPECTIONS, StoreHandler(engine), settings)
    runner.install_signal_handlers()
    try:
        runner.run()
    finally:
        server.stop(grace=5)
        engine.dispose()


if __name__ == "__main__":
    main()
