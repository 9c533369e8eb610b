"""The InspectionQuery gRPC service (MES reads it), with auth, health checking and reflection."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
import psycopg2.errors
import sqlalchemy as sa
from defectflow.v1 import inspections_pb2, query_pb2, query_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.blobstore import BlobStore
from services.common.images import encode_png, png_size
from services.store.adapters import db
from services.store.adapters.auth import (
    BearerAuthInterceptor,
    Principal,
    TokenBook,
    caller,
    open_or_refuse,
)
from services.store.adapters.images import (
    ImageCorrupt,
    ImageGone,
    decode_frame,
    defect_records,
    load_frame,
)
from services.store.config import StoreSettings
from services.store.logic import (
    Cursor,
    Filter,
    RetentionPolicy,
    check_review,
    decode_cursor,
    page_size,
    rates,
    shift_minutes,
)
from services.store.overlay import draw_overlay

SERVICE_NAME = query_pb2.DESCRIPTOR.services_by_name["InspectionQuery"].full_name
BUCKETS = {
    query_pb2.TIME_BUCKET_NONE: ("", 0),
    query_pb2.TIME_BUCKET_HOUR: ("hour", 3600),
    query_pb2.TIME_BUCKET_SHIFT: ("shift", 3600),  # at most one shift start per hour counts
    query_pb2.TIME_BUCKET_DAY: ("day", 86400),
}
MAX_STAT_BUCKETS = 10_000
log = logging.getLogger("defectflow.store.api")
T = TypeVar("T")


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_of(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The gRPC status for an exception raised while serving a call."""
    if isinstance(exc, Refused):
        return exc.code, exc.message
    if isinstance(exc, ImageGone):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, ImageCorrupt):  # before ValueError, its base
        return grpc.StatusCode.DATA_LOSS, str(exc)
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig
        if isinstance(orig, psycopg2.errors.QueryCanceled):
            return grpc.StatusCode.DEADLINE_EXCEEDED, "the query ran past the call's deadline"
        if isinstance(orig, psycopg2.DataError):
            return grpc.StatusCode.INVALID_ARGUMENT, str(orig).splitlines()[0]
        if isinstance(exc, sa.exc.OperationalError):
            return grpc.StatusCode.UNAVAILABLE, "the results database is unavailable; retry"
    log.exception("query failed", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


def guarded(context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status code
        code, message = status_of(exc)
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


def to_filter(pb: query_pb2.InspectionFilter) -> Filter:
    return Filter(
        lines=tuple(pb.lines),
        stations=tuple(pb.stations),
        cameras=tuple(pb.cameras),
        verdicts=tuple(int(v) for v in pb.verdicts),
        recipe_id=pb.recipe_id,
        recipe_version=pb.recipe_version,
        captured_from_ns=pb.captured_from_unix_ns,
        captured_to_ns=pb.captured_to_unix_ns,
        part_id=pb.part_id,
        defect_classes=tuple(pb.defect_classes),
        model_versions=dict(pb.model_versions),
        review_state=int(pb.review_state),
        sample_fraction=pb.sample_fraction,
        reviewed_dispositions=tuple(int(v) for v in pb.reviewed_dispositions),
    ).check()


def review(row: sa.Row) -> query_pb2.Review:
    return query_pb2.Review(
        frame_id=row.frame_id,
        disposition=row.disposition,
        defect_class=row.defect_class,
        comment=row.comment,
        reviewer=row.reviewer,
        reviewer_role=row.reviewer_role,
        reviewed_unix_ns=row.reviewed_unix_ns,
        machine_verdict=row.machine_verdict,
        machine_score=row.machine_score,
        review_id=row.id,
    )


def record(row: sa.Row, reviews: list[sa.Row] | None = None) -> query_pb2.InspectionRecord:
    msg = inspections_pb2.Inspection.FromString(row.payload)
    return query_pb2.InspectionRecord(
        inspection=msg,
        stored_unix_ns=row.stored_unix_ns,
        cursor=Cursor(row.tx_id, row.id).encode(),
        image_available=bool(row.has_image),
        reviews=[review(r) for r in reviews or ()],
    )


def records(conn: sa.Connection, rows: list[sa.Row]) -> list[query_pb2.InspectionRecord]:
    """Records with their reviews, read in the caller's transaction."""
    by_id = db.reviews_of(conn, [r.id for r in rows])
    return [record(r, by_id.get(r.id)) for r in rows]


@dataclass(frozen=True)
class ApiOptions:
    max_page_size: int = 1000
    max_page_bytes: int = 3 * 1024 * 1024
    watch_poll_s: float = 1.0
    watch_heartbeat_s: float = 10.0
    max_watch_streams: int = 16
    time_zone: str = "UTC"
    shift_starts: tuple[str, ...] = ("06:00", "14:00", "22:00")
    max_image_pixels: int = 64 * 1024 * 1024
    retention: RetentionPolicy = RetentionPolicy()

    @staticmethod
    def from_settings(s: StoreSettings) -> ApiOptions:
        return ApiOptions(
            max_page_size=s.max_page_size,
            max_page_bytes=s.max_page_bytes,
            watch_poll_s=s.watch_poll_s,
            watch_heartbeat_s=s.watch_heartbeat_s,
            max_watch_streams=s.max_watch_streams,
            time_zone=s.stats_time_zone,
            shift_starts=tuple(x.strip() for x in s.shift_starts.split(",") if x.strip()),
            max_image_pixels=s.max_image_pixels,
            retention=retention_policy(s),
        )


def retention_policy(s: StoreSettings) -> RetentionPolicy:
    return RetentionPolicy(
        records_ok_days=s.retention_records_ok_days,
        records_ng_days=s.retention_records_ng_days,
        images_ok_days=s.retention_images_ok_days,
        images_ng_days=s.retention_images_ng_days,
    ).check()


MAX_QUERY_S = 60.0  # a statement's ceiling when the caller sets no (or a longer) deadline


def _remaining(context: grpc.ServicerContext) -> float:
    """Seconds a statement may run: the call's remaining deadline, at most MAX_QUERY_S
    (without a deadline gRPC reports a practically infinite remainder)."""
    left = context.time_remaining()
    if left is None:
        return MAX_QUERY_S
    if left <= 0:
        raise Refused(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline passed before the query ran")
    return min(left, MAX_QUERY_S)


class InspectionQueryServicer(query_pb2_grpc.InspectionQueryServicer):
    def __init__(
        self,
        engine: sa.Engine,
        options: ApiOptions,
        blobs: BlobStore | None = None,
        feed: db.ChangeFeed | None = None,
        book: TokenBook | None = None,
    ) -> None:
        self.engine = engine
        self.book = book or TokenBook()
        self.opt = options
        self.blobs = blobs
        self.feed = feed
        self.streams = threading.BoundedSemaphore(options.max_watch_streams)
        self.stopping = threading.Event()

    # --- records ---------------------------------------------------------------------

    def GetInspection(self, request, context):
        def run():
            if not request.frame_id:
                raise ValueError("frame_id is required")
            with db.reading(self.engine, _remaining(context)) as conn:
                row = db.get_by_frame(conn, request.frame_id)
                found = records(conn, [row]) if row is not None else []
            if not found:
                raise Refused(
                    grpc.StatusCode.NOT_FOUND, f"no inspection with frame_id {request.frame_id!r}"
                )
            return found[0]

        return guarded(context, run)

    def GetByPart(self, request, context):
        def run():
            if not request.part_id:
                raise ValueError("part_id is required")
            with db.reading(self.engine, _remaining(context)) as conn:
                found = records(conn, db.get_by_part(conn, request.part_id, self.opt.max_page_size))
            if not found:
                raise Refused(
                    grpc.StatusCode.NOT_FOUND, f"no inspection of part_id {request.part_id!r}"
                )
            return query_pb2.GetByPartResponse(records=found)

        return guarded(context, run)

    def ListInspections(self, request, context):
        def run():
            f = to_filter(request.filter)
            after = decode_cursor(request.page_token) if request.page_token else Cursor()
            size = page_size(request.page_size, self.opt.max_page_size)
            with db.reading(self.engine, _remaining(context)) as conn:
                page = db.list_page(conn, f, after, size, self.opt.max_page_bytes)
                found = records(conn, page.rows)
            return query_pb2.ListInspectionsResponse(
                records=found,
                next_page_token=page.resume.encode() if page.more else "",
                resume_cursor=page.resume.encode(),
            )

        return guarded(context, run)

    # --- statistics ------------------------------------------------------------------

    def GetStatistics(self, request, context):
        return guarded(context, lambda: self._statistics(request, context))

    def _statistics(self, request, context) -> query_pb2.GetStatisticsResponse:
        f = to_filter(request.filter)
        if not (f.captured_from_ns and f.captured_to_ns):
            raise ValueError("statistics need a time range: set captured_from/to_unix_ns")
        if request.bucket not in BUCKETS:
            raise ValueError(f"unknown time bucket {request.bucket}")
        bucket, seconds = BUCKETS[request.bucket]
        if seconds and (f.captured_to_ns - f.captured_from_ns) / 1e9 / seconds > MAX_STAT_BUCKETS:
            raise ValueError(f"time range too long for {bucket} buckets (>{MAX_STAT_BUCKETS})")
        tz_name = request.time_zone or self.opt.time_zone
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {tz_name!r}") from exc
        starts = shift_minutes(list(request.shift_starts) or list(self.opt.shift_starts))
        q = db.StatsQuery(f, request.by_line, bucket, tz_name, starts)
        with db.reading(self.engine, _remaining(context)) as conn:
            total, groups = db.statistics(conn, q)
        return query_pb2.GetStatisticsResponse(
            total=_group(total, tz), groups=[_group(g, tz) for g in groups]
        )

    # --- live stream -----------------------------------------------------------------

    def WatchInspections(self, request, context):
        if not self.streams.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.opt.max_watch_streams} watch streams already open; retry later",
            )
        try:
            f, cursor = guarded(context, lambda: self._watch_start(request, context))
            yield from self._watch(f, cursor, context)
        finally:
            self.streams.release()

    def _watch_start(self, request, context) -> tuple[Filter, Cursor]:
        f = to_filter(request.filter)
        if request.cursor:
            return f, decode_cursor(request.cursor)
        with db.reading(self.engine, _remaining(context)) as conn:
            return f, Cursor.frontier(db.frontier(conn))

    def _watch(
        self, f: Filter, cursor: Cursor, context: grpc.ServicerContext
    ) -> Iterator[query_pb2.WatchInspectionsResponse]:
        last_sent = time.monotonic()
        while context.is_active() and not self.stopping.is_set():
            seen = self.feed.version if self.feed else 0

            def read(after: Cursor = cursor) -> tuple[db.Page, list[query_pb2.InspectionRecord]]:
                with db.reading(self.engine, _remaining(context)) as conn:
                    page = db.list_page(
                        conn, f, after, self.opt.max_page_size, self.opt.max_page_bytes
                    )
                    return page, records(conn, page.rows)

            page, found = guarded(context, read)
            for rec in found:
                yield query_pb2.WatchInspectionsResponse(record=rec, cursor=rec.cursor)
            cursor = page.resume
            now = time.monotonic()
            if page.rows:
                last_sent = now
            if page.more:
                continue
            if now - last_sent >= self.opt.watch_heartbeat_s:
                yield query_pb2.WatchInspectionsResponse(cursor=cursor.encode())
                last_sent = now
            wait = self.opt.watch_poll_s
            left = context.time_remaining()
            if left is not None:
                wait = max(0.0, min(wait, left))
            if self.feed:
                self.feed.wait(seen, wait)
            else:
                self.stopping.wait(wait)

    # --- images ----------------------------------------------------------------------

    def _frame(self, request, context):
        if not request.frame_id:
            raise ValueError("frame_id is required")
        with db.reading(self.engine, _remaining(context)) as conn:
            row = db.image_source(conn, request.frame_id)
        if row is None:
            raise Refused(
                grpc.StatusCode.NOT_FOUND, f"no inspection with frame_id {request.frame_id!r}"
            )
        return load_frame(row, self.blobs)

    def GetImage(self, request, context):
        def run():
            frame = self._frame(request, context)
            if frame.encoding == "png":
                png = frame.encoded
                w, h = png_size(png)
            else:
                image = decode_frame(frame, self.opt.max_image_pixels)
                png, (h, w) = encode_png(image), image.shape[:2]
            return query_pb2.ImageResponse(frame_id=request.frame_id, png=png, width=w, height=h)

        return guarded(context, run)

    def GetOverlay(self, request, context):
        def run():
            frame = self._frame(request, context)
            image = decode_frame(frame, self.opt.max_image_pixels)
            drawn = draw_overlay(image, defect_records(frame.inspection), frame.inspection.verdict)
            h, w = drawn.shape[:2]
            return query_pb2.ImageResponse(
                frame_id=request.frame_id, png=encode_png(drawn), width=w, height=h
            )

        return guarded(context, run)

    # --- reviews ---------------------------------------------------------------------

    def SubmitReview(self, request, context):
        def run():
            if not request.frame_id:
                raise ValueError("frame_id is required")
            cls, comment = check_review(
                int(request.disposition), request.defect_class, request.comment
            )
            who = self._caller(context)
            row = db.add_review(
                self.engine,
                request.frame_id,
                {
                    "disposition": int(request.disposition),
                    "defect_class": cls,
                    "comment": comment,
                    "reviewer": who.name,
                    "reviewer_role": who.role,
                    "reviewed_unix_ns": time.time_ns(),
                },
                _remaining(context),
            )
            if row is None:
                raise Refused(
                    grpc.StatusCode.NOT_FOUND, f"no inspection with frame_id {request.frame_id!r}"
                )
            log.info(
                "review of %s by %s: %s %s",
                request.frame_id,
                who.name or "(open API)",
                row.disposition,
                cls,
            )
            return review(row)

        return guarded(context, run)

    def WhoAmI(self, request, context):
        who = self._caller(context)
        return query_pb2.WhoAmIResponse(
            name=who.name, role=who.role, authenticated=not self.book.empty
        )

    def _caller(self, context: grpc.ServicerContext) -> Principal:
        # the interceptor already refused calls without a valid token
        return caller(self.book, context.invocation_metadata())

    # --- admin -----------------------------------------------------------------------

    def RunRetention(self, request, context):
        def run():
            n_rec, n_img = db.apply_retention(
                self.engine, self.opt.retention, time.time_ns(), self.blobs
            )
            return query_pb2.RunRetentionResponse(records_deleted=n_rec, images_deleted=n_img)

        return guarded(context, run)


def _group(g: db.GroupCounts, tz: ZoneInfo) -> query_pb2.StatisticsGroup:
    r = rates(g.count, g.ok, g.ng, g.review)
    start_ns, label = 0, ""
    if isinstance(g.bucket_local, datetime):
        start_ns = int(g.bucket_local.replace(tzinfo=tz).timestamp()) * 10**9
        label = f"{g.bucket_local:%Y-%m-%d %H:%M}" + (f" shift {g.shift}" if g.shift else "")
    return query_pb2.StatisticsGroup(
        line=g.line,
        bucket_start_unix_ns=start_ns,
        bucket_label=label,
        count=g.count,
        ok=g.ok,
        ng=g.ng,
        review=g.review,
        yield_rate=r.yield_,
        ng_rate=r.ng_rate,
        review_rate=r.review_rate,
        pareto=[
            query_pb2.DefectClassCount(defect_class=c, defects=n, inspections=k)
            for c, n, k in g.pareto
        ],
        mean_latency_s=g.mean_latency_s,
        p95_latency_s=g.p95_latency_s,
    )


@dataclass
class RunningApi:
    server: grpc.Server
    port: int
    servicer: InspectionQueryServicer
    feed: db.ChangeFeed

    def stop(self, grace: float = 5.0) -> None:
        self.servicer.stopping.set()
        self.server.stop(grace).wait()
        self.feed.stop()


def credentials(s: StoreSettings) -> grpc.ServerCredentials | None:
    if not s.tls_cert_file and not s.tls_key_file:
        return None
    if not (s.tls_cert_file and s.tls_key_file):
        raise ValueError("TLS needs both tls_cert_file and tls_key_file")
    ca = s.tls_client_ca_file.read_bytes() if s.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(s.tls_key_file.read_bytes(), s.tls_cert_file.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def serve(engine: sa.Engine, s: StoreSettings, blobs: BlobStore | None = None) -> RunningApi:
    """Start the query API on `s.grpc_address` (port 0 picks a free one)."""
    book = TokenBook(s.tokens, s.tokens_file)
    open_or_refuse(book, s.open_api, s.grpc_address)
    if book.empty:
        log.warning(
            "query API runs WITHOUT authentication on %s (open_api): local demo only",
            s.grpc_address,
        )
    feed = db.ChangeFeed(engine).start()
    servicer = InspectionQueryServicer(engine, ApiOptions.from_settings(s), blobs, feed, book)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=s.grpc_workers, thread_name_prefix="query"),
        interceptors=[BearerAuthInterceptor(book)],
    )
    query_pb2_grpc.add_InspectionQueryServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, reflection.SERVICE_NAME, health.SERVICE_NAME), server
    )
    creds = credentials(s)
    if creds is None:
        port = server.add_insecure_port(s.grpc_address)
    else:
        port = server.add_secure_port(s.grpc_address, creds)
    if port == 0:
        feed.stop()
        raise RuntimeError(f"cannot bind the query API to {s.grpc_address}")
    server.start()
    return RunningApi(server, port, servicer, feed)
