"""Store: inspections -> PostgreSQL (idempotent), and the MES query API over gRPC."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import sqlalchemy as sa
from defectflow.v1 import inspections_pb2
from kafka.consumer.fetcher import ConsumerRecord

from services.common import metrics, topics
from services.common.blobstore import BlobStore, LocalBlobStore
from services.common.codec import decode
from services.common.errors import BadInput, Transient
from services.common.logs import setup_logging
from services.common.stage import Handled, StageRunner, StatelessHandler, dead_letter
from services.store.adapters import db, grpc_api
from services.store.config import StoreSettings
from services.store.logic import inspection_row

log = logging.getLogger("defectflow.store")


# what a database that is down or restarting raises: psycopg2's errors, and the pool's own
# (a pre-ping that finds the server gone invalidates the pool: DisconnectionError /
# InvalidatePoolError; no connection free in time: TimeoutError) -- all of them mean
# "retry the batch later", never "this record is bad"
DB_DOWN = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
)


class StoreHandler(StatelessHandler):
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def handle(self, records: Sequence[ConsumerRecord]) -> Handled:
        out = Handled(done=list(records))
        rows, children, seen, msgs = [], [], set(), []
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
            msgs.append(msg)
        try:
            started = time.perf_counter()
            written = db.write_batch(self.engine, rows, children)
        except DB_DOWN as exc:
            # connection refused / lost mid-batch: nothing committed, the stage rewinds and
            # retries the same records with backoff until PostgreSQL is back
            raise Transient(
                f"PostgreSQL unavailable, batch of {len(rows)} kept for retry: {exc}"
            ) from exc
        observe_batch(msgs, rows, written, time.perf_counter() - started)
        return out


def observe_batch(msgs: list, rows: list[dict], written: int, seconds: float) -> None:
    """Rows written, write latency, and per frame the frame->record latency (the same
    stored_unix_ns the row holds, so the histogram and the table agree) with the stage
    spans from its stamps. A batch with redelivered frames is left out of the latency:
    which of its rows were new is not known here, and a redelivery is no new record."""
    if not rows:
        return
    metrics.DB_WRITE_SECONDS.observe(seconds)
    metrics.ROWS_WRITTEN.inc(written)
    metrics.DB_DUPLICATES.inc(len(rows) - written)
    if written != len(rows):
        return
    for msg, row in zip(msgs, rows, strict=True):
        stamps = [(s.stage, s.received_unix_ns, s.sent_unix_ns) for s in msg.stamps]
        metrics.observe_frame(row["line"], stamps, row["captured_unix_ns"], row["stored_unix_ns"])


def wait_for_database(engine: sa.Engine, max_wait_s: float) -> None:
    delay = 0.5
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            return
        except DB_DOWN as exc:
            log.warning("waiting for PostgreSQL: %s", str(exc).splitlines()[0])
            time.sleep(delay)
            delay = min(delay * 2, max_wait_s)


class RetentionLoop:
    """Applies the retention policy every `interval_s` in a background thread."""

    def __init__(self, engine: sa.Engine, settings: StoreSettings, blobs: BlobStore | None) -> None:
        self.engine = engine
        self.policy = grpc_api.retention_policy(settings)
        self.interval_s = settings.retention_interval_s
        self.blobs = blobs
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="store-retention", daemon=True)

    def start(self) -> RetentionLoop:
        if self.policy != self.policy.__class__():  # something to expire
            self.thread.start()
            log.info("retention every %.0f s: %s", self.interval_s, self.policy)
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                n_rec, n_img = db.apply_retention(
                    self.engine, self.policy, time.time_ns(), self.blobs
                )
                if n_rec or n_img:
                    log.info("retention removed %d records and %d images", n_rec, n_img)
            except sa.exc.SQLAlchemyError as exc:  # next round retries
                log.warning("retention failed, retrying next round: %s", exc)
            self.stopping.wait(self.interval_s)


def main() -> None:
    settings = StoreSettings()
    setup_logging("store", settings.log_level)
    metrics.serve(settings.metrics_port, settings.metrics_addr)
    engine = sa.create_engine(settings.database_url, pool_pre_ping=True, pool_size=10)
    wait_for_database(engine, settings.db_retry_max_s)
    db.upgrade(engine)
    blobs = LocalBlobStore(settings.blob_root)
    api = grpc_api.serve(engine, settings, blobs)
    log.info("query API listening on port %d", api.port)
    retention = RetentionLoop(engine, settings, blobs).start()
    runner = StageRunner("store", topics.INSPECTIONS, StoreHandler(engine), settings)
    runner.install_signal_handlers()
    try:
        runner.run()
    finally:
        retention.stop()
        api.stop(grace=5)
        engine.dispose()


if __name__ == "__main__":
    main()
