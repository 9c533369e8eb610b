"""`defectflow query`: an example MES client of the InspectionQuery gRPC API."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import typer
from defectflow.v1 import inspections_pb2, query_pb2, query_pb2_grpc
from google.protobuf.json_format import MessageToDict

app = typer.Typer(help="Query stored inspections over the gRPC API (as an MES would).")

VERDICTS = {"ok": 1, "ng": 2, "review": 3}
BUCKETS = {
    "none": query_pb2.TIME_BUCKET_NONE,
    "hour": query_pb2.TIME_BUCKET_HOUR,
    "shift": query_pb2.TIME_BUCKET_SHIFT,
    "day": query_pb2.TIME_BUCKET_DAY,
}
AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

TARGET = typer.Option("127.0.0.1:50051", help="host:port of the query API")
TOKEN = typer.Option(
    "", envvar="DEFECTFLOW_TOKEN", help="bearer token (or env DEFECTFLOW_TOKEN)", show_default=False
)
TLS_CA = typer.Option(None, help="PEM CA certificate: connect with TLS and verify against it")
TIMEOUT = typer.Option(10.0, help="deadline of each call in seconds")
LINE = typer.Option([], "--line", help="filter: line (repeatable)")
STATION = typer.Option([], "--station", help="filter: station (repeatable)")
CAMERA = typer.Option([], "--camera", help="filter: camera (repeatable)")
VERDICT = typer.Option([], "--verdict", help="filter: ok / ng / review (repeatable)")
DEFECT = typer.Option([], "--defect-class", help="filter: has a defect of this class (repeatable)")
MODEL = typer.Option([], "--model", help="filter: model=version (repeatable)")
RECIPE = typer.Option("", "--recipe", help="filter: recipe id")
PART = typer.Option("", "--part", help="filter: part id")
SINCE = typer.Option(
    "", help="captured at or after: ISO time (UTC if no offset) or 8h / 30m / 2d ago"
)
UNTIL = typer.Option("", help="captured before: ISO time or 8h / 30m / 2d ago")


class Client:
    """A stub plus the call options every command passes."""

    def __init__(self, target: str, token: str, tls_ca: Path | None, timeout: float) -> None:
        options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]  # large frames
        if tls_ca is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=tls_ca.read_bytes())
            self.channel = grpc.secure_channel(target, creds, options)
        else:
            self.channel = grpc.insecure_channel(target, options)
        self.stub = query_pb2_grpc.InspectionQueryStub(self.channel)
        self.metadata = [("authorization", f"Bearer {token}")] if token else None
        self.timeout = timeout

    def call(self, method: str, request, timeout: float | None = -1.0):
        t = self.timeout if timeout == -1.0 else timeout
        try:
            return getattr(self.stub, method)(request, timeout=t, metadata=self.metadata)
        except grpc.RpcError as err:
            fail(err)


def fail(err: grpc.RpcError) -> None:
    typer.echo(f"error: {err.code().name}: {err.details()}", err=True)
    raise typer.Exit(2)


def unix_ns(text: str, now_ns: int | None = None) -> int:
    """ISO 8601 (UTC when it names no offset) or a relative '8h' meaning 8 hours ago."""
    if not text:
        return 0
    now_ns = now_ns if now_ns is not None else time.time_ns()
    m = AGO.match(text.strip())
    if m:
        return now_ns - int(float(m.group(1)) * UNIT_S[m.group(2)] * 1e9)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is neither ISO time nor like 8h / 30m / 2d") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def build_filter(
    line, station, camera, verdict, defect_class, model, recipe, part, since, until
) -> query_pb2.InspectionFilter:
    try:
        verdicts = [VERDICTS[v.lower()] for v in verdict]
    except KeyError as exc:
        raise typer.BadParameter(f"verdict {exc.args[0]!r} is not ok, ng or review") from exc
    models = {}
    for m in model:
        name, sep, version = m.partition("=")
        if not sep or not name or not version:
            raise typer.BadParameter(f"--model {m!r}: expected name=version")
        models[name] = version
    return query_pb2.InspectionFilter(
        lines=line,
        stations=station,
        cameras=camera,
        verdicts=verdicts,
        defect_classes=defect_class,
        model_versions=models,
        recipe_id=recipe,
        part_id=part,
        captured_from_unix_ns=unix_ns(since),
        captured_to_unix_ns=unix_ns(until),
    )


def summary(rec: query_pb2.InspectionRecord) -> str:
    i = rec.inspection
    s = i.context.source
    when = datetime.fromtimestamp(i.context.captured_unix_ns / 1e9, UTC).strftime("%H:%M:%S")
    verdict = inspections_pb2.Verdict.Name(i.verdict).removeprefix("VERDICT_")
    classes = ",".join(sorted({d.defect_class for d in i.defects}))
    return (
        f"{i.context.frame_id}  {when}  {s.line:8s} {s.station:8s} {s.camera:10s} "
        f"{verdict:6s} score {i.score:7.2f}  defects {len(i.defects)} {classes}"
    )


@app.command("list")
def list_(
    target: str = TARGET,
    token: str = TOKEN,
    tls_ca: Path = TLS_CA,
    timeout: float = TIMEOUT,
    line: list[str] = LINE,
    station: list[str] = STATION,
    camera: list[str] = CAMERA,
    verdict: list[str] = VERDICT,
    defect_class: list[str] = DEFECT,
    model: list[str] = MODEL,
    recipe: str = RECIPE,
    part: str = PART,
    since: str = SINCE,
    until: str = UNTIL,
    limit: int = typer.Option(20, help="rows to print"),
    as_json: bool = typer.Option(False, "--json", help="one JSON record per line"),
) -> None:
    """List stored inspections in store order (oldest first), following page tokens;
    prints the resume cursor for `watch --cursor` last."""
    c = Client(target, token, tls_ca, timeout)
    flt = build_filter(
        line, station, camera, verdict, defect_class, model, recipe, part, since, until
    )
    token_, shown, resume = "", 0, ""
    while shown < limit:
        resp = c.call(
            "ListInspections",
            query_pb2.ListInspectionsRequest(
                filter=flt, page_size=min(500, limit - shown), page_token=token_
            ),
        )
        for rec in resp.records:
            typer.echo(json.dumps(MessageToDict(rec)) if as_json else summary(rec))
            shown += 1
        resume = resp.resume_cursor
        token_ = resp.next_page_token
        if not token_:
            break
    typer.echo(f"# cursor {token_ or resume}", err=True)


@app.command()
def get(
    frame_id: str,
    target: str = TARGET,
    token: str = TOKEN,
    tls_ca: Path = TLS_CA,
    timeout: float = TIMEOUT,
) -> None:
    """One inspection with its defects, as JSON."""
    c = Client(target, token, tls_ca, timeout)
    rec = c.call("GetInspection", query_pb2.GetInspectionRequest(frame_id=frame_id))
    typer.echo(json.dumps(MessageToDict(rec), indent=2))


@app.command()
def part(
    part_id: str,
    target: str = TARGET,
    token: str = TOKEN,
    tls_ca: Path = TLS_CA,
    timeout: float = TIMEOUT,
) -> None:
    """Every inspection of one part (all stations and cameras), by capture time."""
    c = Client(target, token, tls_ca, timeout)
    resp = c.call("GetByPart", query_pb2.GetByPartRequest(part_id=part_id))
    for rec in resp.records:
        typer.echo(summary(rec))


@app.command()
def stats(
    target: str = TARGET,
    token: str = TOKEN,
    tls_ca: Path = TLS_CA,
    timeout: float = TIMEOUT,
    line: list[str] = LINE,
    verdict: list[str] = VERDICT,
    recipe: str = RECIPE,
    since: str = typer.Option("24h", help="from: ISO time or 8h / 2d ago"),
    until: str = typer.Option("", help="to: ISO time or 8h / 2d ago; default now"),
    by_line: bool = typer.Option(False, "--by-line", help="one group per line"),
    bucket: str = typer.Option("none", help="time groups: none, hour, shift, day"),
    tz: str = typer.Option(
        "", "--time-zone", "--tz", help="IANA time zone for hour/shift/day; default the store's"
    ),
    shift: list[str] = typer.Option([], "--shift", help="shift start HH:MM (repeatable)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Count, yield, NG/REVIEW rates and the defect Pareto over a time range."""
    if bucket not in BUCKETS:
        raise typer.BadParameter(f"--bucket {bucket!r}: one of {', '.join(BUCKETS)}")
    c = Client(target, token, tls_ca, timeout)
    flt = build_filter(line, [], [], verdict, [], [], recipe, "", since, until or "0s")
    resp = c.call(
        "GetStatistics",
        query_pb2.GetStatisticsRequest(
            filter=flt, by_line=by_line, bucket=BUCKETS[bucket], time_zone=tz, shift_starts=shift
        ),
    )
    if as_json:
        typer.echo(json.dumps(MessageToDict(resp), indent=2))
        return
    for g in [*resp.groups, resp.total]:
        name = " ".join(x for x in (g.line, g.bucket_label) if x) or "total"
        pareto = ", ".join(f"{p.defect_class} {p.defects}" for p in g.pareto[:5])
        typer.echo(
            f"{name:32s} n {g.count:6d}  yield {g.yield_rate:6.1%}  NG {g.ng_rate:6.1%}  "
            f"REVIEW {g.review_rate:6.1%}  p95 {g.p95_latency_s:5.2f} s  {pareto}"
        )


@app.command()
def watch(
    target: str = TARGET,
    token: str = TOKEN,
    tls_ca: Path = TLS_CA,
    line: list[str] = LINE,
    station: list[str] = STATION,
    camera: list[str] = CAMERA,
    verdict: list[str] = VERDICT,
    defect_class: list[str] = DEFECT,
    recipe: str = RECIPE,
    cursor: str = typer.Option("", help="resume after this cursor (from list or a watch)"),
    count: int = typer.Option(0, help="stop after this many records; 0 = until Ctrl-C"),
) -> None:
    """Stream new inspections as they are stored; reconnects from the last cursor."""
    c = Client(target, token, tls_ca, 0.0)  # a stream has no deadline
    flt = build_filter(line, station, camera, verdict, defect_class, [], recipe, "", "", "")
    seen, delay = 0, 0.5
    while True:
        req = query_pb2.WatchInspectionsRequest(filter=flt, cursor=cursor)
        try:
            for msg in c.stub.WatchInspections(req, metadata=c.metadata):
                cursor = msg.cursor or cursor
                delay = 0.5
                if msg.HasField("record"):
                    typer.echo(summary(msg.record))
                    seen += 1
                    if count and seen >= count:
                        typer.echo(f"# cursor {cursor}", err=True)
                        return
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                fail(err)
            typer.echo(f"# disconnected ({err.details()}); resuming in {delay:.1f} s", err=True)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        except KeyboardInterrupt:
            typer.echo(f"# cursor {cursor}", err=True)
            return


def _save(resp: query_pb2.ImageResponse, out: Path) -> None:
    out.write_bytes(resp.png)
    typer.echo(f"{out}  {resp.width}x{resp.height}  {len(resp.png)} bytes")


@app.command()
def image(
    frame_id: str,
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write"),
    target: str = TARGET,
    token: str = TOKEN,
    tls_ca: Path = TLS_CA,
    timeout: float = TIMEOUT,
) -> None:
    """Save the frame as PNG."""
    c = Client(target, token, tls_ca, timeout)
    _save(c.call("GetImage", query_pb2.GetImageRequest(frame_id=frame_id)), out)


@app.command()
def overlay(
    frame_id: str,
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write"),
    target: str = TARGET,
    token: str = TOKEN,
    tls_ca: Path = TLS_CA,
    timeout: float = TIMEOUT,
) -> None:
    """Save the frame with defect boxes, contours and labels drawn on it, as PNG."""
    c = Client(target, token, tls_ca, timeout)
    _save(c.call("GetOverlay", query_pb2.GetImageRequest(frame_id=frame_id)), out)
