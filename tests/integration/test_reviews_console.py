"""The console over a real store API and PostgreSQL (no browser): sign-in and refusals,
the gallery's filters, exports, images, and a review made in the console read back
through gRPC. The browser test against the whole pipeline is tests/e2e/test_console.py."""

from __future__ import annotations

import csv
import io
import json
import re
import time

import cv2
import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from defectflow.v1 import common_pb2, inspections_pb2, query_pb2, query_pb2_grpc
from fastapi.testclient import TestClient

from services.common.blobstore import LocalBlobStore
from services.console.app import create_app
from services.console.config import ConsoleSettings
from services.store.adapters import db, grpc_api
from services.store.config import StoreSettings
from services.store.logic import inspection_row

pytestmark = pytest.mark.integration

READ = "mes-token-0123456789abcdef"
ANNA = "anna-token-0123456789abcdef"
NOW = time.time_ns()  # reset when the records are written (the live board counts recent ones)


def inspection(i: int, verdict: int, line: str) -> inspections_pb2.Inspection:
    img = np.full((64, 96, 3), 90, np.uint8)
    png = cv2.imencode(".png", img)[1].tobytes()
    m = inspections_pb2.Inspection(
        schema_version=1,
        verdict=verdict,
        score=1.0 + verdict,
        complete=True,
        model_versions={"anomaly": "7"},
        context=common_pb2.FrameContext(
            frame_id=f"c-{i:03d}",
            recipe_id="brushed",
            recipe_version=3,
            captured_unix_ns=NOW - (100 - i) * 10**9,
            source=common_pb2.FrameSource(line=line, station="st", camera="cam-1"),
            image=common_pb2.ImageRef(inline_data=png, encoding="png", width=96, height=64),
        ),
    )
    if verdict == 2:
        d = m.defects.add(defect_class="scratch" if i % 2 else "dent", score=5, area_px=30)
        d.box.x0, d.box.y0, d.box.x1, d.box.y1 = 10, 10, 40, 30
    m.stamps.add(stage="postprocess", received_unix_ns=NOW, sent_unix_ns=NOW + 10**6)
    return m


@pytest.fixture(scope="module")
def store_api(postgres, tmp_path_factory):
    # "now" is when the records are written, not when this module was collected: in a full
    # session that is minutes earlier, past the live board's 10 minute window
    global NOW
    NOW = time.time_ns()
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("drop database if exists console_api with (force)"))
        conn.execute(sa.text("create database console_api"))
    admin.dispose()
    engine = sa.create_engine(postgres.url.rsplit("/", 1)[0] + "/console_api")
    db.upgrade(engine)
    msgs = [inspection(i, (1, 2, 3)[i % 3], f"line-{1 + i % 2}") for i in range(30)]
    pairs = [inspection_row(m, m.SerializeToString(), time.time_ns()) for m in msgs]
    db.write_batch(engine, [r for r, _ in pairs], [d for _, d in pairs])
    root = tmp_path_factory.mktemp("blobs")
    s = StoreSettings(
        database_url=engine.url.render_as_string(hide_password=False),
        grpc_address="127.0.0.1:0",
        blob_root=root,
        tokens=f"mes:read:{READ},anna:reviewer:{ANNA}",
    )
    api = grpc_api.serve(engine, s, LocalBlobStore(root))
    yield api.port
    api.stop(0)
    engine.dispose()


@pytest.fixture()
def console(store_api):
    app = create_app(ConsoleSettings(query_target=f"127.0.0.1:{store_api}", page_size=4))
    with TestClient(app, follow_redirects=False) as client:
        yield client


SAME_SITE = {"origin": "http://testserver"}  # what a browser sends with the console's forms


def sign_in(client: TestClient, token: str) -> None:
    r = client.post("/login", data={"token": token, "next": "/gallery"}, headers=SAME_SITE)
    assert r.status_code == 303 and r.headers["location"] == "/gallery", r.text


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_requests_without_a_valid_token_are_refused(console):
    assert console.get("/export.csv").status_code == 401
    assert console.get("/img/c-001/overlay").status_code == 401
    assert console.get("/events").status_code == 401
    page = console.get("/gallery", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    bad = console.post("/login", data={"token": "wrong-token-0000000000"}, headers=SAME_SITE)
    assert bad.status_code == 401 and "refused" in bad.text
    assert console.get("/export.csv").status_code == 401
    assert (
        console.get("/export.csv", headers={"authorization": f"Bearer {READ}"}).status_code == 200
    )


def test_gallery_filters_pages_and_images(console):
    sign_in(console, READ)
    first = console.get("/gallery", params={"verdict": "ng", "line": "line-2"})
    assert first.status_code == 200
    # NG are i % 3 == 1; line-2 are odd i: i in 1, 7, 13, 19, 25 -> 5 records, 4 a page
    assert first.text.count('class="card ') == 4
    assert "c-001" in first.text and "c-025" not in first.text
    assert 'id="next-page"' in first.text
    token = first.text.split("page_token=", 1)[1].split('"', 1)[0]
    second = console.get(
        "/gallery?verdict=ng&line=line-2&page_token=" + token.replace("&amp;", "&")
    )
    assert second.text.count('class="card ') == 1 and "c-025" in second.text
    scratch = console.get("/gallery", params={"verdict": "any", "defect_class": "dent"})
    assert "c-004" in scratch.text and "c-001" not in scratch.text
    bad = console.get("/gallery", params={"since": "not a time"})
    assert bad.status_code == 400 and "since" in bad.text

    thumb = console.get("/img/c-001/overlay", params={"w": 48})
    assert thumb.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_COLOR).shape == (
        32,
        48,
        3,
    )
    frame = console.get("/img/c-001/frame")
    assert frame.headers["content-type"] == "image/png"
    assert console.get("/img/nope/frame").status_code == 404


def test_exports_follow_the_filter(console):
    sign_in(console, READ)
    text = console.get("/export.csv", params={"verdict": "review"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 10 and {r["verdict"] for r in rows} == {"REVIEW"}
    assert rows[0]["model_versions"] == "anomaly=7" and rows[0]["recipe_version"] == "3"
    data = console.get("/export.parquet", params={"verdict": "any", "line": "line-1"}).content
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 15 and set(table.column("line").to_pylist()) == {"line-1"}


def test_a_review_in_the_console_is_visible_through_grpc(console, store_api):
    sign_in(console, READ)
    detail = console.get("/inspection/c-002")
    assert detail.status_code == 200 and "may look but not review" in detail.text
    refused = console.post(
        "/inspection/c-002/review",
        data={"disposition": "ok", "csrf": csrf_of(detail.text)},
        headers=SAME_SITE,
    )
    assert refused.status_code == 403 and "PERMISSION_DENIED" in refused.text

    sign_in(console, ANNA)
    queue = console.get("/review")
    assert "c-002" in queue.text  # a REVIEW verdict waiting for a decision
    form = {"disposition": "ng", "defect_class": "dent", "comment": "edge chip", "queue": "1"}
    form["csrf"] = csrf_of(console.get("/inspection/c-002").text)
    saved = console.post("/inspection/c-002/review", data=form, headers=SAME_SITE)
    assert saved.status_code == 303 and saved.headers["location"] == "/review?saved=c-002"
    assert "c-002" not in console.get("/review").text.split("Audit sample")[0]

    stub = query_pb2_grpc.InspectionQueryStub(grpc.insecure_channel(f"127.0.0.1:{store_api}"))
    rec = stub.GetInspection(
        query_pb2.GetInspectionRequest(frame_id="c-002"),
        metadata=[("authorization", f"Bearer {READ}")],
        timeout=10,
    )
    assert rec.inspection.verdict == 3
    last = rec.reviews[-1]
    assert (last.disposition, last.defect_class, last.comment, last.reviewer) == (
        2,
        "dent",
        "edge chip",
        "anna",
    )
    assert "edge chip" in console.get("/inspection/c-002").text


def test_forged_cross_site_posts_are_refused(console, store_api):
    # login CSRF: a foreign page posting the attacker's token into the victim's browser
    assert console.post("/login", data={"token": ANNA}).status_code == 403
    foreign = {"origin": "https://evil.example"}
    assert console.post("/login", data={"token": ANNA}, headers=foreign).status_code == 403
    sign_in(console, ANNA)
    good = csrf_of(console.get("/inspection/c-003").text)
    review = {"disposition": "ok", "csrf": good}
    assert console.post("/inspection/c-003/review", data=review, headers=foreign).status_code == 403
    stale = {"disposition": "ok", "csrf": "not-this-session"}
    assert (
        console.post("/inspection/c-003/review", data=stale, headers=SAME_SITE).status_code == 403
    )
    no_token = {"disposition": "ok"}
    assert (
        console.post("/inspection/c-003/review", data=no_token, headers=SAME_SITE).status_code
        == 403
    )
    assert console.post("/logout", headers=foreign).status_code == 403
    # the Referer stands in where a browser sends no Origin; nothing was saved before this
    referer = {"referer": "http://testserver/inspection/c-003"}
    saved = console.post("/inspection/c-003/review", data=review, headers=referer)
    assert saved.status_code == 303
    stub = query_pb2_grpc.InspectionQueryStub(grpc.insecure_channel(f"127.0.0.1:{store_api}"))
    rec = stub.GetInspection(
        query_pb2.GetInspectionRequest(frame_id="c-003"),
        metadata=[("authorization", f"Bearer {READ}")],
        timeout=10,
    )
    assert len(rec.reviews) == 1


def test_session_cookies_are_secure_unless_the_console_binds_to_loopback():
    assert not ConsoleSettings(host="127.0.0.1").cookies_secure
    assert ConsoleSettings(host="0.0.0.0").cookies_secure
    assert not ConsoleSettings(host="0.0.0.0", secure_cookies=False).cookies_secure


def test_daily_report_from_the_api(store_api, tmp_path):
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from services.cli.main import app

    day = datetime.fromtimestamp((NOW - 50 * 10**9) / 1e9, UTC).date().isoformat()
    args = ["report", "--day", day, "--out", str(tmp_path), "--target", f"127.0.0.1:{store_api}"]
    res = CliRunner().invoke(app, args, env={"DEFECTFLOW_TOKEN": READ})
    assert res.exit_code == 0, res.output
    assert "30 inspections" in res.output
    out = tmp_path / day
    for name in ("yield.png", "pareto.png", "scores.png"):
        img = cv2.imread(str(out / name))
        assert img is not None and img.shape[0] > 200 and img.std() > 5, name
    page = (out / "report.html").read_text()
    assert "Inspected 30" in page and "<th scope='row'>dent</th>" in page
    assert "<th scope='row'>line-1</th><td>15</td>" in page


def test_an_open_api_signs_in_with_an_empty_token(postgres, store_api, tmp_path):
    engine = sa.create_engine(postgres.url.rsplit("/", 1)[0] + "/console_api")
    s = StoreSettings(
        database_url=engine.url.render_as_string(hide_password=False),
        grpc_address="127.0.0.1:0",
        blob_root=tmp_path,
        open_api=True,
    )
    api = grpc_api.serve(engine, s, LocalBlobStore(tmp_path))
    try:
        app = create_app(ConsoleSettings(query_target=f"127.0.0.1:{api.port}"))
        with TestClient(app, follow_redirects=False) as client:
            assert client.post("/login", data={"token": ""}, headers=SAME_SITE).status_code == 303
            page = client.get("/review").text
            assert "open API" in page and "(admin)" in page
    finally:
        api.stop(0)
        engine.dispose()


def test_live_board_starts_with_the_recent_records(console):
    sign_in(console, READ)
    with console.stream("GET", "/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = resp.iter_lines()
        data = next(line for line in lines if line.startswith("data: "))
    board = json.loads(data[len("data: ") :])
    assert board["total"]["count"] == 30
    assert {(c["line"], c["count"]) for c in board["cameras"]} == {("line-1", 15), ("line-2", 15)}
    assert board["total"]["ng"] == 10 and board["total"]["review"] == 10
