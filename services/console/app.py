"""The operator console (FastAPI, server-rendered HTML, a little vanilla JS).

Every read and write goes through the store's gRPC query API with the signed-in user's own
bearer token: the store authenticates it and enforces the roles (read / reviewer / admin);
the console keeps no data of its own beyond a session id -> token map in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import cv2
import grpc
import numpy as np
from defectflow.v1 import query_pb2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from services.console.adapters.exports import to_csv, to_parquet
from services.console.adapters.query import ApiError, QueryApi, board_event, export_row, to_json
from services.console.config import ConsoleSettings
from services.console.logic import (
    Board,
    ExportRow,
    FilterForm,
    stage_latencies,
    utc,
    verdict_name,
)

HERE = Path(__file__).resolve().parent
COOKIE = "defectflow_session"
log = logging.getLogger("defectflow.console")


@dataclass(frozen=True)
class Session:
    token: str
    name: str
    role: str
    authenticated: bool
    expires: float
    csrf: str  # every form of this session posts it back (a forged cross-site form cannot)

    @property
    def can_review(self) -> bool:
        return self.role in ("reviewer", "admin")


class NotSignedIn(Exception):
    pass


class CrossSite(Exception):
    """A POST that a page of this console did not send (CSRF): refused with 403."""


def create_app(settings: ConsoleSettings, api: QueryApi | None = None) -> FastAPI:
    sessions: dict[str, Session] = {}
    state: dict[str, QueryApi] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        # the aio channel belongs to the server's event loop: create it there
        state["api"] = api or QueryApi(
            settings.query_target, settings.tls_ca_file, settings.call_timeout_s
        )
        yield
        await state["api"].close()

    app = FastAPI(title="defectflow console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["verdict"] = verdict_name
    templates.env.filters["utc"] = utc
    templates.env.globals["qs"] = lambda d: urlencode(d)

    # --- sessions ------------------------------------------------------------------

    def bearer(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    async def session_of(request: Request) -> Session:
        """The caller's session: the cookie of a browser that signed in, or an
        `Authorization: Bearer` header (scripts, exports); NotSignedIn otherwise."""
        token = bearer(request)
        if token is not None:
            return await sign_in(token)
        sid = request.cookies.get(COOKIE, "")
        s = sessions.get(sid)
        if s is None or s.expires < time.time():
            sessions.pop(sid, None)
            raise NotSignedIn()
        return s

    async def sign_in(token: str) -> Session:
        try:
            who = await state["api"].call("WhoAmI", query_pb2.WhoAmIRequest(), token)
        except ApiError as err:
            if err.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise NotSignedIn() from err
            raise
        return Session(
            token,
            who.name or "open API",
            who.role,
            who.authenticated,
            time.time() + settings.session_hours * 3600,
            secrets.token_urlsafe(24),
        )

    def same_origin(request: Request) -> bool:
        """The browser says the form came from this console: its Origin (or, where a
        browser sends none, its Referer) names the host the request was sent to."""
        source = request.headers.get("origin") or request.headers.get("referer") or ""
        return bool(source) and urlsplit(source).netloc == request.headers.get("host", "")

    async def posted(request: Request, s: Session | None) -> dict[str, str]:
        """The form of a POST that may change something: refused (CrossSite) unless it
        comes from this console's own page and, in a session, carries its CSRF token.
        Calls with a bearer token carry no ambient credential, so they need neither."""
        form = await form_of(request)
        if bearer(request) is not None:
            return form
        if not same_origin(request):
            raise CrossSite("the request did not come from this console (Origin check)")
        if s is not None and not secrets.compare_digest(form.get("csrf", ""), s.csrf):
            raise CrossSite("the form's CSRF token is missing or stale: reload the page")
        return form

    def sweep(now: float) -> None:
        for sid in [k for k, v in sessions.items() if v.expires < now]:
            del sessions[sid]

    @app.exception_handler(CrossSite)
    async def cross_site(request: Request, exc: CrossSite):
        log.warning("console refused a POST to %s: %s", request.url.path, exc)
        return page(request, "error.html", None, 403, message=str(exc))

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _exc: NotSignedIn):
        if "text/html" in request.headers.get("accept", "") and request.method == "GET":
            return RedirectResponse("/login?" + urlencode({"next": request.url.path}), 303)
        return Response(
            "sign in first: a console session cookie or 'Authorization: Bearer <token>'",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        status = {
            grpc.StatusCode.NOT_FOUND: 404,
            grpc.StatusCode.INVALID_ARGUMENT: 400,
            grpc.StatusCode.PERMISSION_DENIED: 403,
            grpc.StatusCode.UNAUTHENTICATED: 401,
            grpc.StatusCode.UNAVAILABLE: 503,
            grpc.StatusCode.DEADLINE_EXCEEDED: 504,
        }.get(exc.code, 502)
        return page(request, "error.html", None, status, message=str(exc))

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError):
        return page(request, "error.html", None, 400, message=str(exc))

    def page(request: Request, name: str, s: Session | None, status: int = 200, **ctx):
        return templates.TemplateResponse(request, name, {"session": s, **ctx}, status_code=status)

    async def form_of(request: Request) -> dict[str, str]:
        # urlencoded forms only (what the pages post), parsed without python-multipart
        body = (await request.body()).decode()
        return dict(parse_qsl(body, keep_blank_values=True))

    # --- sign in / out -------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/"):
        return page(request, "login.html", None, next=safe_next(next), error="")

    @app.post("/login")
    async def login(request: Request):
        form = await posted(request, None)  # no session yet: the Origin check (login CSRF)
        target = safe_next(form.get("next", "/"))
        try:
            s = await sign_in(form.get("token", "").strip())
        except NotSignedIn:
            return page(
                request,
                "login.html",
                None,
                401,
                next=target,
                error="The store refused this token. Check it and try again.",
            )
        sid = secrets.token_urlsafe(32)
        sweep(time.time())
        sessions[sid] = s
        resp = RedirectResponse(target, 303)
        resp.set_cookie(
            COOKIE,
            sid,
            max_age=int(settings.session_hours * 3600),
            httponly=True,
            samesite="strict",
            secure=settings.cookies_secure,
        )
        log.info("console sign-in: %s (%s)", s.name, s.role)
        return resp

    @app.post("/logout")
    async def logout(request: Request):
        await posted(request, await session_of(request))
        sessions.pop(request.cookies.get(COOKIE, ""), None)
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE)
        return resp

    # --- lines overview (live) -----------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def lines(request: Request):
        s = await session_of(request)
        return page(request, "lines.html", s, window_min=settings.live_window_s / 60)

    @app.get("/events")
    async def events(request: Request):
        s = await session_of(request)
        return StreamingResponse(
            live_board(request, s),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def live_board(request: Request, s: Session) -> AsyncIterator[str]:
        """SSE: the board after the last `live_window_s` of records, then after every change
        (at most one event a second) fed by WatchInspections; a comment keeps it open."""
        board = Board()
        qapi = state["api"]
        since = time.time_ns() - int(settings.live_window_s * 1e9)
        flt = query_pb2.InspectionFilter(captured_from_unix_ns=since)
        token, read = "", 0
        while True:  # backfill, then watch from exactly where the list ended
            try:
                resp = await qapi.call(
                    "ListInspections",
                    query_pb2.ListInspectionsRequest(filter=flt, page_size=1000, page_token=token),
                    s.token,
                )
            except ApiError as err:
                yield stream_failed(err.code, err.details)
                return
            for rec in resp.records:
                board.add(*board_event(rec))
            read += len(resp.records)
            cursor = resp.resume_cursor
            token = resp.next_page_token
            if not token or read >= settings.live_backfill_max:
                break
        yield f"retry: 3000\nevent: board\ndata: {to_json(board.snapshot(time.time_ns()))}\n\n"
        changes: asyncio.Queue = asyncio.Queue()

        async def pump() -> None:
            try:
                req = query_pb2.WatchInspectionsRequest(filter=flt, cursor=cursor)
                async for ev in qapi.watch(req, s.token):
                    if ev.HasField("record"):
                        board.add(*board_event(ev.record))
                        changes.put_nowait(True)
            except grpc.aio.AioRpcError as err:
                changes.put_nowait(ApiError(err.code(), err.details() or ""))

        task = asyncio.create_task(pump())
        sent, last = board.version, time.monotonic()
        try:
            while not await request.is_disconnected():
                try:
                    item = await asyncio.wait_for(changes.get(), timeout=1.0)
                except TimeoutError:
                    item = None
                if isinstance(item, ApiError):
                    yield stream_failed(item.code, item.details)
                    return
                now = time.monotonic()
                if (board.version != sent and now - last >= 1.0) or now - last >= 10.0:
                    # rates decay on a quiet line too: resend at least every 10 s
                    sent, last = board.version, now
                    yield f"event: board\ndata: {to_json(board.snapshot(time.time_ns()))}\n\n"
        finally:
            task.cancel()

    # --- gallery and exports -------------------------------------------------------

    async def listing(s: Session, form: FilterForm, page_token: str, size: int):
        req = query_pb2.ListInspectionsRequest(
            filter=query_pb2.InspectionFilter(**form.fields()),
            page_size=size,
            page_token=page_token,
        )
        return await state["api"].call("ListInspections", req, s.token)

    @app.get("/gallery", response_class=HTMLResponse)
    async def gallery(request: Request, page_token: str = ""):
        s = await session_of(request)
        form = FilterForm.from_params(dict(request.query_params))
        resp = await listing(s, form, page_token, settings.page_size)
        return page(
            request,
            "gallery.html",
            s,
            form=form,
            records=resp.records,
            next_token=resp.next_page_token,
            paged=bool(page_token),
        )

    @app.get("/export.{fmt}")
    async def export(request: Request, fmt: str):
        s = await session_of(request)
        if fmt not in ("csv", "parquet"):
            return Response(f"unknown export format {fmt!r}: csv or parquet", status_code=404)
        form = FilterForm.from_params(dict(request.query_params))
        rows: list[ExportRow] = []
        token = ""
        while len(rows) < settings.max_export_rows:
            resp = await listing(s, form, token, 1000)
            rows += [export_row(r) for r in resp.records]
            token = resp.next_page_token
            if not token:
                break
        rows = rows[: settings.max_export_rows]
        data = await run_in_threadpool(to_csv if fmt == "csv" else to_parquet, rows)
        media = "text/csv" if fmt == "csv" else "application/vnd.apache.parquet"
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        return Response(
            data,
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="inspections-{stamp}.{fmt}"',
                "X-Rows": str(len(rows)),
                "X-Truncated": "1" if token else "0",
            },
        )

    # --- images --------------------------------------------------------------------

    @app.get("/img/{frame_id}/{kind}")
    async def image(request: Request, frame_id: str, kind: str, w: int = 0):
        s = await session_of(request)
        if kind not in ("frame", "overlay"):
            return Response(f"unknown image {kind!r}: frame or overlay", status_code=404)
        method = "GetImage" if kind == "frame" else "GetOverlay"
        resp = await state["api"].call(
            method, query_pb2.GetImageRequest(frame_id=frame_id), s.token
        )
        data, media = resp.png, "image/png"
        if 0 < w < resp.width:
            data = await run_in_threadpool(thumbnail, resp.png, w)
            media = "image/jpeg"
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})

    # --- inspection detail and reviews ---------------------------------------------

    @app.get("/inspection/{frame_id}", response_class=HTMLResponse)
    async def detail(request: Request, frame_id: str, queue: int = 0, saved: int = 0):
        s = await session_of(request)
        rec = await state["api"].call(
            "GetInspection", query_pb2.GetInspectionRequest(frame_id=frame_id), s.token
        )
        ins = rec.inspection
        stamps = [(t.stage, t.received_unix_ns, t.sent_unix_ns, t.instance) for t in ins.stamps]
        return page(
            request,
            "detail.html",
            s,
            rec=rec,
            ins=ins,
            latencies=stage_latencies(ins.context.captured_unix_ns, stamps),
            classes=sorted({d.defect_class for d in ins.defects} | {"anomaly"}),
            queue=queue,
            saved=saved,
        )

    @app.post("/inspection/{frame_id}/review")
    async def submit_review(request: Request, frame_id: str):
        s = await session_of(request)
        form = await posted(request, s)
        disposition = {"ok": 1, "ng": 2}.get(form.get("disposition", ""), 0)
        if not disposition:
            raise ValueError("choose OK or NG")
        cls = form.get("defect_class", "").strip() if disposition == 2 else ""
        await state["api"].call(
            "SubmitReview",
            query_pb2.SubmitReviewRequest(
                frame_id=frame_id,
                disposition=disposition,
                defect_class=cls,
                comment=form.get("comment", ""),
            ),
            s.token,
        )
        if form.get("queue") == "1":
            return RedirectResponse("/review?saved=" + frame_id, 303)
        return RedirectResponse(f"/inspection/{frame_id}?saved=1", 303)

    @app.get("/review", response_class=HTMLResponse)
    async def review_queue(request: Request, saved: str = ""):
        s = await session_of(request)
        base = {"review_state": query_pb2.REVIEW_STATE_UNREVIEWED}
        pending = await state["api"].call(
            "ListInspections",
            query_pb2.ListInspectionsRequest(
                filter=query_pb2.InspectionFilter(verdicts=[3], **base),
                page_size=settings.page_size,
            ),
            s.token,
        )
        audit = await state["api"].call(
            "ListInspections",
            query_pb2.ListInspectionsRequest(
                filter=query_pb2.InspectionFilter(
                    verdicts=[1, 2], sample_fraction=settings.audit_sample, **base
                ),
                page_size=settings.page_size,
            ),
            s.token,
        )
        return page(
            request,
            "queue.html",
            s,
            pending=pending.records,
            audit=audit.records,
            audit_sample=settings.audit_sample,
            saved=saved,
        )

    @app.get("/healthz")
    async def healthz():
        return {"ok": True}

    return app


def stream_failed(code: grpc.StatusCode, details: str) -> str:
    """The end of a live stream: a refusal stops the page's EventSource (a `failed` event);
    anything else (store restarting, network) ends the response and the browser reconnects
    after the `retry` interval, starting again from a fresh backfill."""
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return f"event: failed\ndata: {to_json({'error': f'{code.name}: {details}'})}\n\n"
    log.warning("live stream ended (%s: %s); the browser reconnects", code.name, details)
    return ": stream ended, reconnect\n\n"


def safe_next(path: str) -> str:
    """Only local paths: never redirect a signed-in user to another site."""
    return path if path.startswith("/") and not path.startswith("//") else "/"


def thumbnail(png: bytes, width: int) -> bytes:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("the store returned an image that does not decode")
    h, w = img.shape[:2]
    small = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("thumbnail encoding failed")
    return buf.tobytes()
