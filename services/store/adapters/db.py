"""PostgreSQL access: migrations, idempotent batch writes, queries, statistics, retention.

Store order and cursors. Rows get a BIGSERIAL id when inserted, but transactions commit
in any order: a reader paging by id alone can pass id 120 while the transaction holding
id 110 is still open, and then never see 110. Each row therefore also records its
writing transaction id (`tx_id`, xid8 as bigint), and a reader only returns rows whose
tx_id is below the xmin of its snapshot, the oldest transaction id still running. Every
transaction below xmin has finished, so the rows below it are final; every transaction
that commits later has a tx_id >= xmin and sorts after any cursor handed out so far.
Ordering by (tx_id, id) with that frontier makes pagination and the live watch gap-free
under concurrent writers. The price: a long-running write transaction anywhere in the
cluster holds new rows back until it ends (freshness, never correctness); the store's
own writes and retention deletes are short batches.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects.postgresql import insert

from services.common.blobstore import BlobStore
from services.store.adapters.schema import defects, inspections, reviews
from services.store.logic import Cursor, Filter, RetentionPolicy

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
CHANNEL = "defectflow_inspections"
log = logging.getLogger("defectflow.store.db")


def upgrade(engine: sa.Engine) -> None:
    """Apply all alembic migrations (the store runs this at start-up)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        # one migrator at a time when several store replicas start together
        conn.execute(sa.text("select pg_advisory_xact_lock(4242000006)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def write_batch(engine: sa.Engine, rows: Sequence[dict], defect_rows: Sequence[list[dict]]) -> int:
    """Insert inspections (ON CONFLICT (frame_id) DO NOTHING) and their defects in one
    transaction; returns how many were new. A redelivered inspection changes nothing.

    Rows go in frame-id order so that two writers with overlapping batches take the unique
    index's locks in the same order and cannot deadlock.
    """
    if not rows:
        return 0
    order = sorted(range(len(rows)), key=lambda i: rows[i]["frame_id"])
    with engine.begin() as conn:
        stmt = (
            insert(inspections)
            .on_conflict_do_nothing(index_elements=["frame_id"])
            .returning(inspections.c.id, inspections.c.frame_id)
        )
        result = conn.execute(stmt, [rows[i] for i in order])
        new = {fid: iid for iid, fid in result}
        children = [
            {**d, "inspection_id": new[rows[i]["frame_id"]]}
            for i in order
            if rows[i]["frame_id"] in new
            for d in defect_rows[i]
        ]
        if children:
            conn.execute(insert(defects), children)
        if new:  # delivered at commit; wakes WatchInspections streams early
            conn.execute(sa.text("select pg_notify(:c, '')"), {"c": CHANNEL})
    return len(new)


# --- reading ---------------------------------------------------------------------------


@contextmanager
def reading(engine: sa.Engine, timeout_s: float | None) -> Iterator[sa.Connection]:
    """A read transaction whose statements stop when the caller's deadline passes."""
    with engine.connect() as conn, conn.begin():
        if timeout_s is not None:
            ms = max(1, int(timeout_s * 1000))
            conn.execute(sa.text(f"SET LOCAL statement_timeout = {ms}"))
        yield conn


def frontier(conn: sa.Connection) -> int:
    """The oldest transaction id still running: every row below it is final."""
    return conn.execute(
        sa.text("select pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    ).scalar_one()


def where_clauses(f: Filter) -> list[sa.ColumnElement[bool]]:
    c = inspections.c
    out: list[sa.ColumnElement[bool]] = []
    if f.lines:
        out.append(c.line.in_(f.lines))
    if f.stations:
        out.append(c.station.in_(f.stations))
    if f.cameras:
        out.append(c.camera.in_(f.cameras))
    if f.verdicts:
        out.append(c.verdict.in_(f.verdicts))
    if f.recipe_id:
        out.append(c.recipe_id == f.recipe_id)
    if f.recipe_version:
        out.append(c.recipe_version == f.recipe_version)
    if f.part_id:
        out.append(c.part_id == f.part_id)
    if f.captured_from_ns:
        out.append(c.captured_unix_ns >= f.captured_from_ns)
    if f.captured_to_ns:
        out.append(c.captured_unix_ns < f.captured_to_ns)
    if f.model_versions:
        out.append(c.model_versions.contains(dict(f.model_versions)))
    if f.defect_classes:
        out.append(
            sa.exists().where(
                defects.c.inspection_id == c.id, defects.c.defect_class.in_(f.defect_classes)
            )
        )
    if f.review_state:
        reviewed = sa.exists().where(reviews.c.inspection_id == c.id)
        out.append(reviewed if f.review_state == 2 else sa.not_(reviewed))
    if f.reviewed_dispositions:
        latest = (
            sa.select(reviews.c.disposition)
            .where(reviews.c.inspection_id == c.id)
            .order_by(reviews.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        out.append(latest.in_(f.reviewed_dispositions))
    if 0.0 < f.sample_fraction < 1.0:
        # hashtext is stable for a PostgreSQL major version: the same records every time
        bucket = sa.func.mod(
            sa.func.abs(sa.cast(sa.func.hashtext(c.frame_id), sa.BigInteger)), SAMPLE_BUCKETS
        )
        out.append(bucket < int(round(f.sample_fraction * SAMPLE_BUCKETS)))
    return out


SAMPLE_BUCKETS = 1_000_000


RECORD_COLUMNS = (
    inspections.c.id,
    inspections.c.tx_id,
    inspections.c.payload,
    inspections.c.stored_unix_ns,
    sa.and_(
        sa.not_(inspections.c.image_purged),
        sa.or_(inspections.c.image_uri != "", inspections.c.image_data.is_not(None)),
    ).label("has_image"),
)


@dataclass(frozen=True)
class Page:
    rows: list[sa.Row]
    more: bool  # rows after the last one exist below the frontier
    resume: Cursor  # after everything this page covers


def list_page(conn: sa.Connection, f: Filter, after: Cursor, limit: int, max_bytes: int) -> Page:
    """One page in store order after `after`, at most `limit` rows and about `max_bytes`
    of payload (at least one row), read only below the frontier."""
    xmin = frontier(conn)
    c = inspections.c
    q = (
        sa.select(*RECORD_COLUMNS)
        .where(
            *where_clauses(f),
            sa.tuple_(c.tx_id, c.id) > sa.tuple_(after.tx_id, after.row_id),
            c.tx_id < xmin,
        )
        .order_by(c.tx_id, c.id)
        .limit(limit + 1)
    )
    fetched = conn.execute(q).all()
    rows, size = [], 0
    for r in fetched[:limit]:
        if rows and size + len(r.payload) > max_bytes:
            break
        rows.append(r)
        size += len(r.payload)
    more = len(rows) < len(fetched)
    # a short page means every matching row below the frontier has been returned
    resume = Cursor(rows[-1].tx_id, rows[-1].id) if more else max(after, Cursor.frontier(xmin))
    return Page(rows, more, resume)


def reviews_of(conn: sa.Connection, inspection_ids: Sequence[int]) -> dict[int, list[sa.Row]]:
    """Reviews of these inspections, oldest first, with the frame id."""
    if not inspection_ids:
        return {}
    r = reviews.c
    rows = conn.execute(
        sa.select(*r, inspections.c.frame_id)
        .join(inspections, inspections.c.id == r.inspection_id)
        .where(r.inspection_id.in_(list(inspection_ids)))
        .order_by(r.inspection_id, r.id)
    ).all()
    out: dict[int, list[sa.Row]] = {}
    for row in rows:
        out.setdefault(row.inspection_id, []).append(row)
    return out


def add_review(
    engine: sa.Engine,
    frame_id: str,
    values: dict,
    timeout_s: float | None,
) -> sa.Row | None:
    """Store a review of the inspection with this frame id (None when there is none); the
    machine verdict and score are copied from the record, which stays unchanged."""
    with engine.begin() as conn:
        if timeout_s is not None:
            conn.execute(sa.text(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}"))
        target = conn.execute(
            sa.select(inspections.c.id, inspections.c.verdict, inspections.c.score).where(
                inspections.c.frame_id == frame_id
            )
        ).first()
        if target is None:
            return None
        new = conn.execute(
            insert(reviews)
            .values(
                inspection_id=target.id,
                machine_verdict=target.verdict,
                machine_score=target.score,
                **values,
            )
            .returning(*reviews.c, sa.literal(frame_id, sa.String).label("frame_id"))
        ).one()
    return new


def get_by_frame(conn: sa.Connection, frame_id: str) -> sa.Row | None:
    return conn.execute(
        sa.select(*RECORD_COLUMNS).where(inspections.c.frame_id == frame_id)
    ).first()


def get_by_part(conn: sa.Connection, part_id: str, limit: int) -> list[sa.Row]:
    c = inspections.c
    return conn.execute(
        sa.select(*RECORD_COLUMNS)
        .where(c.part_id == part_id)
        .order_by(c.captured_unix_ns, c.id)
        .limit(limit)
    ).all()


def image_source(conn: sa.Connection, frame_id: str) -> sa.Row | None:
    c = inspections.c
    return conn.execute(
        sa.select(c.payload, c.image_uri, c.image_data, c.image_purged).where(
            c.frame_id == frame_id
        )
    ).first()


# --- statistics --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsQuery:
    filter: Filter
    by_line: bool
    bucket: str  # "", "hour", "shift", "day"
    time_zone: str
    shift_starts: tuple[int, ...]  # minutes after local midnight, sorted


@dataclass
class GroupCounts:
    line: str
    bucket_local: object  # datetime (local wall time) or None
    shift: int
    count: int
    ok: int
    ng: int
    review: int
    mean_latency_s: float
    p95_latency_s: float
    pareto: list[tuple[str, int, int]]  # class, defects, inspections


def _bucket_columns(q: StatsQuery) -> list[sa.ColumnElement]:
    c = inspections.c
    if not q.bucket:
        return []
    local = sa.func.timezone(q.time_zone, sa.func.to_timestamp(c.captured_unix_ns / 1e9))
    if q.bucket in ("hour", "day"):
        return [
            sa.func.date_trunc(q.bucket, local).label("bucket_local"),
            sa.literal(0).label("shift"),
        ]
    day = sa.func.date_trunc("day", local)
    minute = sa.extract("hour", local) * 60 + sa.extract("minute", local)
    starts = q.shift_starts
    whens = [
        (minute >= s, (day + sa.text(f"interval '{s} minutes'"), i + 1))
        for i, s in reversed(list(enumerate(starts)))
    ]
    prev = day - sa.text(f"interval '{1440 - starts[-1]} minutes'")
    start = sa.case(*[(cond, val[0]) for cond, val in whens], else_=prev)
    number = sa.case(*[(cond, val[1]) for cond, val in whens], else_=len(starts))
    return [start.label("bucket_local"), number.label("shift")]


def statistics(conn: sa.Connection, q: StatsQuery) -> tuple[GroupCounts, list[GroupCounts]]:
    """(total, groups) over the filter; groups by line and/or time bucket when asked."""
    c = inspections.c
    keys = ([c.line.label("line")] if q.by_line else []) + _bucket_columns(q)
    base = sa.select(c.id, c.verdict, c.latency_s, *keys).where(*where_clauses(q.filter)).subquery()
    key_cols = [base.c[k.name] for k in keys]
    grouping = [sa.func.grouping_sets(sa.tuple_(*key_cols), sa.tuple_())] if key_cols else []
    total_flag = sa.func.grouping(*key_cols) if key_cols else sa.literal(0)
    counts = conn.execute(
        sa.select(
            *key_cols,
            total_flag.label("g"),
            sa.func.count().label("n"),
            sa.func.count().filter(base.c.verdict == 1).label("ok"),
            sa.func.count().filter(base.c.verdict == 2).label("ng"),
            sa.func.count().filter(base.c.verdict == 3).label("review"),
            sa.func.coalesce(sa.func.avg(base.c.latency_s), 0.0).label("mean_lat"),
            sa.func.coalesce(
                sa.func.percentile_cont(0.95).within_group(base.c.latency_s), 0.0
            ).label("p95_lat"),
        ).group_by(*grouping)
    ).all()
    pareto_rows = conn.execute(
        sa.select(
            *key_cols,
            total_flag.label("g"),
            defects.c.defect_class,
            sa.func.count().label("defects"),
            sa.func.count(sa.distinct(base.c.id)).label("inspections"),
        )
        .select_from(base.join(defects, defects.c.inspection_id == base.c.id))
        .group_by(
            *(
                [
                    sa.func.grouping_sets(
                        sa.tuple_(*key_cols, defects.c.defect_class),
                        sa.tuple_(defects.c.defect_class),
                    )
                ]
                if key_cols
                else [defects.c.defect_class]
            )
        )
    ).all()

    def key_of(r) -> tuple:
        if not keys or r.g:  # the grand total row of the grouping sets
            return ("total",)
        return tuple(getattr(r, k.name) for k in keys)

    pareto: dict[tuple, list[tuple[str, int, int]]] = {}
    for r in pareto_rows:
        pareto.setdefault(key_of(r), []).append((r.defect_class, r.defects, r.inspections))
    for items in pareto.values():
        items.sort(key=lambda t: (-t[1], t[0]))

    total = GroupCounts("", None, 0, 0, 0, 0, 0, 0.0, 0.0, pareto.get(("total",), []))
    groups = []
    for r in counts:
        g = GroupCounts(
            line=getattr(r, "line", "") if q.by_line else "",
            bucket_local=getattr(r, "bucket_local", None) if q.bucket else None,
            shift=int(getattr(r, "shift", 0) or 0) if q.bucket else 0,
            count=r.n,
            ok=r.ok,
            ng=r.ng,
            review=r.review,
            mean_latency_s=float(r.mean_lat),
            p95_latency_s=float(r.p95_lat),
            pareto=pareto.get(key_of(r), []),
        )
        if not key_cols or r.g:
            g.line, g.bucket_local, g.shift, g.pareto = "", None, 0, pareto.get(("total",), [])
            total = g
        else:
            groups.append(g)
    groups.sort(key=lambda g: (g.line, g.bucket_local or 0))
    return total, groups


# --- retention ---------------------------------------------------------------------------


def _delete_blobs(blobs: BlobStore | None, uris: list[str]) -> None:
    for uri in uris:
        if not uri or blobs is None:
            continue
        try:
            blobs.delete(uri)
        except (OSError, ValueError) as exc:  # an orphan blob costs disk, never a wrong answer
            log.warning("retention could not delete blob %s: %s", uri, exc)


def apply_retention(
    engine: sa.Engine,
    policy: RetentionPolicy,
    now_ns: int,
    blobs: BlobStore | None,
    batch: int = 1000,
) -> tuple[int, int]:
    """Delete expired records (their defects cascade) and expired images, in short
    transactions; blobs go after the commit that forgets them. Returns (records, images)."""
    record_cuts, image_cuts = policy.cutoffs(now_ns)
    c = inspections.c
    records = images = 0
    for cut in record_cuts:
        while True:
            victims = (
                sa.select(c.id)
                .where(c.verdict.in_(cut.verdicts), c.captured_unix_ns < cut.before_ns)
                .limit(batch)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            with engine.begin() as conn:
                gone = conn.execute(
                    sa.delete(inspections)
                    .where(c.id.in_(victims))
                    .returning(
                        c.image_uri, c.image_purged, c.image_data.is_not(None).label("inline")
                    )
                ).all()
            _delete_blobs(blobs, [g.image_uri for g in gone if not g.image_purged])
            records += len(gone)
            images += sum(1 for g in gone if not g.image_purged and (g.image_uri or g.inline))
            if len(gone) < batch:
                break
    for cut in image_cuts:
        while True:
            with engine.begin() as conn:
                had = conn.execute(
                    sa.select(c.id, c.image_uri, c.image_data.is_not(None).label("inline"))
                    .where(
                        sa.not_(c.image_purged),
                        c.verdict.in_(cut.verdicts),
                        c.captured_unix_ns < cut.before_ns,
                    )
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                ).all()
                if had:
                    conn.execute(
                        sa.update(inspections)
                        .where(c.id.in_([h.id for h in had]))
                        .values(image_purged=True, image_data=None)
                    )
            _delete_blobs(blobs, [h.image_uri for h in had])
            images += sum(1 for h in had if h.image_uri or h.inline)
            if len(had) < batch:
                break
    return records, images


# --- change feed -------------------------------------------------------------------------


class ChangeFeed:
    """LISTENs for the writer's NOTIFY and wakes waiting watch streams; when the
    connection is down, streams still poll on their own interval."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.version = 0
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="store-listen", daemon=True)

    def start(self) -> ChangeFeed:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def wait(self, seen: int, timeout_s: float) -> int:
        """Block until a notification newer than `seen` or the timeout; returns the version."""
        with self.cond:
            self.cond.wait_for(lambda: self.version != seen, timeout=timeout_s)
            return self.version

    def _bump(self) -> None:
        with self.cond:
            self.version += 1
            self.cond.notify_all()

    def _run(self) -> None:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                self._listen()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect with backoff
                log.warning("LISTEN %s failed, retrying: %s", CHANNEL, exc)
                self._bump()  # streams re-read now rather than trust a feed that was down
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        try:
            pg = raw.driver_connection
            pg.autocommit = True
            with pg.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
            while not self.stopping.is_set():
                ready, _, _ = select.select([pg], [], [], 1.0)
                if not ready:
                    continue
                pg.poll()
                if pg.notifies:
                    pg.notifies.clear()
                    self._bump()
        finally:
            raw.invalidate()  # never hand a LISTENing connection back to the pool
