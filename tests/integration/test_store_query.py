"""The MES query API against a real PostgreSQL: filters, cursors under concurrent and
late-committing writers, statistics, the live watch, images and overlays."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
import sqlalchemy as sa
from defectflow.v1 import common_pb2, inspections_pb2, query_pb2, query_pb2_grpc
from sqlalchemy.dialects.postgresql import insert

from services.common.blobstore import LocalBlobStore
from services.store.adapters import db, grpc_api
from services.store.adapters.schema import inspections
from services.store.config import StoreSettings
from services.store.logic import inspection_row

pytestmark = pytest.mark.integration

OK, NG, REVIEW = 1, 2, 3
T0 = 1_700_000_000 * 10**9  # 2023-11-14 22:13:20 UTC
H = 3600 * 10**9


def fresh_database(postgres, name: str) -> sa.Engine:
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"drop database if exists {name} with (force)"))
        conn.execute(sa.text(f"create database {name}"))
    admin.dispose()
    engine = sa.create_engine(postgres.url.rsplit("/", 1)[0] + "/" + name, pool_pre_ping=True)
    db.upgrade(engine)
    return engine


def make(
    frame_id: str,
    *,
    line: str = "line-1",
    station: str = "st-1",
    camera: str = "cam-1",
    verdict: int = OK,
    captured: int = T0,
    recipe: str = "brushed",
    recipe_version: int = 1,
    part: str = "",
    models: dict[str, str] | None = None,
    defects: tuple = (),
    latency_s: float = 0.1,
    image: common_pb2.ImageRef | None = None,
) -> inspections_pb2.Inspection:
    msg = inspections_pb2.Inspection(
        schema_version=1,
        verdict=verdict,
        score=2.0 if verdict == NG else 0.5,
        complete=True,
        model_versions=models or {"anomaly": "1"},
        context=common_pb2.FrameContext(
            frame_id=frame_id,
            part_id=part,
            recipe_id=recipe,
            recipe_version=recipe_version,
            captured_unix_ns=captured,
            source=common_pb2.FrameSource(line=line, station=station, camera=camera),
        ),
    )
    if image is not None:
        msg.context.image.CopyFrom(image)
    msg.stamps.add(stage="postprocess", sent_unix_ns=captured + int(latency_s * 1e9))
    for cls, box, contour in defects:
        d = msg.defects.add(defect_class=cls, score=3.0, area_px=10, area_mm2=0.1)
        d.box.x0, d.box.y0, d.box.x1, d.box.y1 = box
        for x, y in contour:
            d.contour.add(x=x, y=y)
    return msg


def store(engine: sa.Engine, msgs) -> int:
    pairs = [inspection_row(m, m.SerializeToString(), time.time_ns()) for m in msgs]
    if not pairs:
        return 0
    rows, children = zip(*pairs, strict=True)
    return db.write_batch(engine, rows, children)


def start_api(engine: sa.Engine, blob_root: Path, **kw) -> grpc_api.RunningApi:
    settings = StoreSettings(
        database_url=engine.url.render_as_string(hide_password=False),
        grpc_address="127.0.0.1:0",
        blob_root=blob_root,
        **{"open_api": True, **kw},
    )
    return grpc_api.serve(engine, settings, LocalBlobStore(blob_root))


def stub_for(api: grpc_api.RunningApi) -> query_pb2_grpc.InspectionQueryStub:
    return query_pb2_grpc.InspectionQueryStub(grpc.insecure_channel(f"127.0.0.1:{api.port}"))


def list_all(stub, flt=None, page_size=7, token=""):
    ids, pages = [], 0
    while True:
        resp = stub.ListInspections(
            query_pb2.ListInspectionsRequest(filter=flt, page_size=page_size, page_token=token),
            timeout=10,
        )
        ids += [r.inspection.context.frame_id for r in resp.records]
        pages += 1
        if not resp.next_page_token:
            return ids, resp.resume_cursor, pages
        token = resp.next_page_token


def ids_of(stub, **flt) -> set[str]:
    ids, _, _ = list_all(stub, query_pb2.InspectionFilter(**flt), page_size=50)
    assert len(ids) == len(set(ids))
    return set(ids)


# --- filters ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(postgres, tmp_path_factory):
    """60 records over 3 lines x 2 stations x 2 cameras, all verdicts, 2 recipes,
    2 model versions, 3 defect classes, 5 parts, 6 hours."""
    engine = fresh_database(postgres, "store_query_filters")
    msgs = []
    classes = ["scratch", "dent", "stain"]
    for i in range(60):
        verdict = (OK, NG, REVIEW)[(i // 3) % 3]
        defects = ()
        if verdict != OK:
            defects = (
                (classes[i % 4 % 3], (10, 10, 20, 20), ()),
                *(((classes[(i + 1) % 3], (30, 30, 40, 40), ()),) if i % 5 == 0 else ()),
            )
        msgs.append(
            make(
                f"f-{i:03d}",
                line=f"line-{i % 3}",
                station=f"st-{i % 2}",
                camera=f"cam-{(i // 2) % 2}",
                verdict=verdict,
                captured=T0 + (i % 6) * H + i,
                recipe=("brushed", "cast")[i % 4 == 0],
                recipe_version=1 + i % 2,
                part=f"part-{i % 5}",
                models={"anomaly": ("1", "2")[i >= 30], "detector": "7"},
                defects=defects,
            )
        )
    store(engine, msgs[:25])
    store(engine, msgs[25:])
    api = start_api(engine, tmp_path_factory.mktemp("blobs"))
    yield stub_for(api), msgs
    api.stop(0)
    engine.dispose()


def test_every_filter_selects_exactly_the_matching_records(catalogue):
    stub, msgs = catalogue

    def expect(pred) -> set[str]:
        return {m.context.frame_id for m in msgs if pred(m)}

    src = lambda m: m.context.source  # noqa: E731
    classes = lambda m: {d.defect_class for d in m.defects}  # noqa: E731
    cases = [
        ({}, lambda m: True),
        ({"lines": ["line-1"]}, lambda m: src(m).line == "line-1"),
        ({"lines": ["line-0", "line-2"]}, lambda m: src(m).line in ("line-0", "line-2")),
        ({"stations": ["st-1"]}, lambda m: src(m).station == "st-1"),
        ({"cameras": ["cam-0"]}, lambda m: src(m).camera == "cam-0"),
        ({"verdicts": [NG]}, lambda m: m.verdict == NG),
        ({"verdicts": [NG, REVIEW]}, lambda m: m.verdict in (NG, REVIEW)),
        ({"recipe_id": "cast"}, lambda m: m.context.recipe_id == "cast"),
        (
            {"recipe_id": "brushed", "recipe_version": 2},
            lambda m: m.context.recipe_id == "brushed" and m.context.recipe_version == 2,
        ),
        ({"part_id": "part-3"}, lambda m: m.context.part_id == "part-3"),
        (
            {"captured_from_unix_ns": T0 + 2 * H, "captured_to_unix_ns": T0 + 4 * H},
            lambda m: T0 + 2 * H <= m.context.captured_unix_ns < T0 + 4 * H,
        ),
        ({"captured_from_unix_ns": T0 + 5 * H}, lambda m: m.context.captured_unix_ns >= T0 + 5 * H),
        ({"defect_classes": ["dent"]}, lambda m: "dent" in classes(m)),
        ({"defect_classes": ["dent", "stain"]}, lambda m: bool(classes(m) & {"dent", "stain"})),
        ({"model_versions": {"anomaly": "2"}}, lambda m: m.model_versions["anomaly"] == "2"),
        (
            {"model_versions": {"anomaly": "1", "detector": "7"}},
            lambda m: m.model_versions["anomaly"] == "1",
        ),
        ({"model_versions": {"detector": "8"}}, lambda m: False),
        (
            {"lines": ["line-2"], "verdicts": [NG], "defect_classes": ["scratch"]},
            lambda m: src(m).line == "line-2" and m.verdict == NG and "scratch" in classes(m),
        ),
    ]
    for flt, pred in cases:
        want = expect(pred)
        assert ids_of(stub, **flt) == want, flt
        # not vacuous: each filter but the first and the impossible one narrows the set
        assert 0 < len(want) < len(msgs) or flt in ({}, {"model_versions": {"detector": "8"}})


def test_pages_cover_everything_once_in_store_order_and_page_size_is_capped(catalogue):
    stub, msgs = catalogue
    ids, _, pages = list_all(stub, page_size=7)
    assert ids == sorted(ids) and len(ids) == 60 and pages == 9  # batches stored in id order
    big = stub.ListInspections(query_pb2.ListInspectionsRequest(page_size=100_000), timeout=10)
    assert len(big.records) == 60 and not big.next_page_token
    default = stub.ListInspections(query_pb2.ListInspectionsRequest(), timeout=10)
    assert len(default.records) == 60


def test_bad_requests_are_invalid_argument_and_unknown_ids_not_found(catalogue):
    stub, _ = catalogue
    bad = [
        query_pb2.ListInspectionsRequest(page_token="not-a-cursor"),
        query_pb2.ListInspectionsRequest(
            filter=query_pb2.InspectionFilter(captured_from_unix_ns=5, captured_to_unix_ns=5)
        ),
        query_pb2.ListInspectionsRequest(filter=query_pb2.InspectionFilter(verdicts=[0])),
        query_pb2.ListInspectionsRequest(filter=query_pb2.InspectionFilter(lines=[""])),
    ]
    for req in bad:
        with pytest.raises(grpc.RpcError) as err:
            stub.ListInspections(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, req
        assert err.value.details()
    for call, req in (
        (stub.GetInspection, query_pb2.GetInspectionRequest(frame_id="nope")),
        (stub.GetByPart, query_pb2.GetByPartRequest(part_id="nope")),
        (stub.GetImage, query_pb2.GetImageRequest(frame_id="nope")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.GetInspection(query_pb2.GetInspectionRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_inspection_and_by_part_return_the_defects(catalogue):
    stub, msgs = catalogue
    rec = stub.GetInspection(query_pb2.GetInspectionRequest(frame_id="f-010"), timeout=10)
    assert rec.inspection == msgs[10]
    part = stub.GetByPart(query_pb2.GetByPartRequest(part_id="part-2"), timeout=10)
    want = sorted(
        (m for m in msgs if m.context.part_id == "part-2"),
        key=lambda m: m.context.captured_unix_ns,
    )
    assert [r.inspection for r in part.records] == want
    assert sum(len(r.inspection.defects) for r in part.records) > 0


# --- cursors under concurrent writers ---------------------------------------------------


@pytest.fixture()
def empty_api(postgres, tmp_path, request):
    engine = fresh_database(postgres, f"store_{request.node.name[5:40]}".lower())
    api = start_api(engine, tmp_path, watch_poll_s=0.2, watch_heartbeat_s=0.5)
    yield engine, api, stub_for(api)
    api.stop(0)
    engine.dispose()


def test_a_late_committing_transaction_is_not_skipped_by_the_cursor(empty_api):
    engine, _, stub = empty_api
    early = make("late-early")
    row, _ = inspection_row(early, early.SerializeToString(), 1)
    with engine.connect() as held:
        tx = held.begin()
        held.execute(insert(inspections).values(row))  # lower id and xid, still open
        store(engine, [make("late-later")])  # higher id, commits first
        first = stub.ListInspections(query_pb2.ListInspectionsRequest(), timeout=10)
        # an id cursor would return late-later now and then never see late-early
        assert [r.inspection.context.frame_id for r in first.records] == []
        tx.commit()
    second = stub.ListInspections(
        query_pb2.ListInspectionsRequest(page_token=first.resume_cursor), timeout=10
    )
    assert [r.inspection.context.frame_id for r in second.records] == ["late-early", "late-later"]
    third = stub.ListInspections(
        query_pb2.ListInspectionsRequest(page_token=second.resume_cursor), timeout=10
    )
    assert list(third.records) == []


def test_pagination_sees_every_row_once_while_writers_insert_concurrently(empty_api):
    engine, _, stub = empty_api
    n_writers, batches, per_batch = 3, 15, 20
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for b in range(batches):
                msgs = [make(f"w{w}-{b:02d}-{k:02d}") for k in range(per_batch)]
                with engine.connect() as conn, conn.begin():
                    # hold the transaction open a while so commits interleave out of id order
                    pairs = [inspection_row(m, m.SerializeToString(), 1) for m in msgs]
                    conn.execute(insert(inspections), [p[0] for p in pairs])
                    time.sleep(0.01 * ((w + b) % 4))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    for t in threads:
        t.start()
    seen: list[str] = []
    token = ""
    while True:
        resp = stub.ListInspections(
            query_pb2.ListInspectionsRequest(page_size=13, page_token=token), timeout=10
        )
        seen += [r.inspection.context.frame_id for r in resp.records]
        token = resp.next_page_token or resp.resume_cursor
        if not any(t.is_alive() for t in threads) and not resp.next_page_token:
            resp = stub.ListInspections(
                query_pb2.ListInspectionsRequest(page_size=1000, page_token=token), timeout=10
            )
            seen += [r.inspection.context.frame_id for r in resp.records]
            break
        time.sleep(0.005)
    assert not errors, errors
    total = n_writers * batches * per_batch
    assert len(seen) == len(set(seen)) == total, (len(seen), len(set(seen)), total)


# --- watch ---------------------------------------------------------------------------------


def collect(stub, req, n: int, timeout_s: float = 20):
    """The first n records of a watch stream, then cancel it."""
    got: list[query_pb2.WatchInspectionsResponse] = []
    stream = stub.WatchInspections(req, timeout=timeout_s)
    for msg in stream:
        if msg.HasField("record"):
            got.append(msg)
            if len(got) == n:
                stream.cancel()
                break
    return got


def test_watch_resumes_from_the_last_page_and_after_a_disconnect_without_gaps(empty_api):
    engine, _, stub = empty_api
    store(engine, [make(f"old-{i}", verdict=(OK, NG)[i % 2]) for i in range(10)])
    ng = query_pb2.InspectionFilter(verdicts=[NG])
    listed, resume, _ = list_all(stub, ng, page_size=3)
    assert listed == [f"old-{i}" for i in range(1, 10, 2)]

    def produce(prefix: str, n: int) -> None:
        for b in range(n):
            store(engine, [make(f"{prefix}-{b}-{k}", verdict=(OK, NG)[k % 2]) for k in range(4)])
            time.sleep(0.05)

    writer = threading.Thread(target=produce, args=("live", 6))
    writer.start()
    first = collect(stub, query_pb2.WatchInspectionsRequest(filter=ng, cursor=resume), 5)
    writer.join()
    produce("gap", 3)  # written while no stream is open
    rest = collect(
        stub, query_pb2.WatchInspectionsRequest(filter=ng, cursor=first[-1].cursor), 12 - 5 + 6
    )
    got = [m.record.inspection.context.frame_id for m in first + rest]
    want = [f"{p}-{b}-{k}" for p, n in (("live", 6), ("gap", 3)) for b in range(n) for k in (1, 3)]
    assert got == want
    assert all(m.record.inspection.verdict == NG for m in first + rest)


def test_watch_from_now_sends_heartbeats_and_honours_the_deadline(empty_api):
    engine, _, stub = empty_api
    store(engine, [make("before-watch")])
    t0 = time.monotonic()
    msgs = []
    with pytest.raises(grpc.RpcError) as err:
        for m in stub.WatchInspections(query_pb2.WatchInspectionsRequest(), timeout=1.6):
            msgs.append(m)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - t0 < 4
    assert msgs and all(not m.HasField("record") and m.cursor for m in msgs)  # heartbeats only
    store(engine, [make("after-watch")])
    got = collect(stub, query_pb2.WatchInspectionsRequest(cursor=msgs[-1].cursor), 1)
    assert got[0].record.inspection.context.frame_id == "after-watch"


# --- statistics ----------------------------------------------------------------------------


def test_statistics_match_a_hand_computed_expectation(empty_api):
    engine, _, stub = empty_api
    day = int(datetime(2024, 5, 2, tzinfo=UTC).timestamp()) * 10**9
    m = 60 * 10**9
    s = ("scratch", (0, 0, 1, 1), ())
    d = ("dent", (0, 0, 1, 1), ())
    data = [
        # line A, 08:xx: 3 OK, 1 NG (2 scratches), 1 REVIEW (1 dent)
        make("a1", line="A", captured=day + 8 * H + 1 * m, latency_s=0.1),
        make("a2", line="A", captured=day + 8 * H + 2 * m, latency_s=0.2),
        make("a3", line="A", captured=day + 8 * H + 3 * m, latency_s=0.3),
        make(
            "a4", line="A", verdict=NG, captured=day + 8 * H + 4 * m, defects=(s, s), latency_s=0.4
        ),
        make(
            "a5",
            line="A",
            verdict=REVIEW,
            captured=day + 8 * H + 5 * m,
            defects=(d,),
            latency_s=0.5,
        ),
        # line A, 14:xx (shift 2): 1 OK, 1 NG (1 dent, 1 scratch)
        make("a6", line="A", captured=day + 14 * H + 10 * m),
        make("a7", line="A", verdict=NG, captured=day + 14 * H + 20 * m, defects=(d, s)),
        # line B, 08:xx: 1 NG (1 dent)
        make("b1", line="B", verdict=NG, captured=day + 8 * H + 30 * m, defects=(d, d)),
        # line B, 05:59 -> shift 3 that began the day before at 22:00
        make("b2", line="B", captured=day + 5 * H + 59 * m),
        # outside the range
        make("x1", line="A", verdict=NG, captured=day + 30 * H, defects=(s,)),
    ]
    store(engine, data)
    flt = query_pb2.InspectionFilter(captured_from_unix_ns=day, captured_to_unix_ns=day + 24 * H)
    resp = stub.GetStatistics(query_pb2.GetStatisticsRequest(filter=flt), timeout=10)
    t = resp.total
    assert (t.count, t.ok, t.ng, t.review) == (9, 5, 3, 1)
    assert t.yield_rate == pytest.approx(5 / 9) and t.ng_rate == pytest.approx(3 / 9)
    assert t.review_rate == pytest.approx(1 / 9)
    # Pareto: dent 4 defects on 3 inspections (a5, a7, b1), scratch 3 on 2 (a4, a7)
    assert [(p.defect_class, p.defects, p.inspections) for p in t.pareto] == [
        ("dent", 4, 3),
        ("scratch", 3, 2),
    ]
    assert list(resp.groups) == []

    by_line = stub.GetStatistics(
        query_pb2.GetStatisticsRequest(filter=flt, by_line=True), timeout=10
    )
    assert [(g.line, g.count, g.ok, g.ng, g.review) for g in by_line.groups] == [
        ("A", 7, 4, 2, 1),
        ("B", 2, 1, 1, 0),
    ]
    assert by_line.total.count == 9
    assert [(p.defect_class, p.defects) for p in by_line.groups[1].pareto] == [("dent", 2)]

    hourly = stub.GetStatistics(
        query_pb2.GetStatisticsRequest(
            filter=query_pb2.InspectionFilter(
                lines=["A"], captured_from_unix_ns=day, captured_to_unix_ns=day + 24 * H
            ),
            by_line=True,
            bucket=query_pb2.TIME_BUCKET_HOUR,
            time_zone="UTC",
        ),
        timeout=10,
    )
    assert [(g.bucket_label, g.count, g.ng) for g in hourly.groups] == [
        ("2024-05-02 08:00", 5, 1),
        ("2024-05-02 14:00", 2, 1),
    ]
    assert hourly.groups[0].bucket_start_unix_ns == day + 8 * H
    assert hourly.groups[0].mean_latency_s == pytest.approx(0.3)
    assert hourly.groups[0].p95_latency_s == pytest.approx(0.48)  # linear between 0.4 and 0.5

    shifts = stub.GetStatistics(
        query_pb2.GetStatisticsRequest(
            filter=flt, bucket=query_pb2.TIME_BUCKET_SHIFT, shift_starts=["06:00", "14:00", "22:00"]
        ),
        timeout=10,
    )
    assert [(g.bucket_label, g.count, g.ok, g.ng, g.review) for g in shifts.groups] == [
        ("2024-05-01 22:00 shift 3", 1, 1, 0, 0),
        ("2024-05-02 06:00 shift 1", 6, 3, 2, 1),
        ("2024-05-02 14:00 shift 2", 2, 1, 1, 0),
    ]
    # the same day in Berlin (UTC+2 in May): 08:xx UTC is 10:xx local, 05:59 UTC is 07:59
    berlin = stub.GetStatistics(
        query_pb2.GetStatisticsRequest(
            filter=flt, bucket=query_pb2.TIME_BUCKET_SHIFT, time_zone="Europe/Berlin"
        ),
        timeout=10,
    )
    assert [(g.bucket_label, g.count) for g in berlin.groups] == [
        ("2024-05-02 06:00 shift 1", 7),
        ("2024-05-02 14:00 shift 2", 2),
    ]
    assert berlin.groups[0].bucket_start_unix_ns == day + 4 * H
    for req in (
        query_pb2.GetStatisticsRequest(),  # no time range
        query_pb2.GetStatisticsRequest(filter=flt, time_zone="Mars/Olympus"),
        query_pb2.GetStatisticsRequest(
            filter=flt, bucket=query_pb2.TIME_BUCKET_SHIFT, shift_starts=["25:00"]
        ),
    ):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetStatistics(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- images --------------------------------------------------------------------------------


def test_image_and_overlay_from_the_blob_store_and_inline(empty_api, tmp_path):
    engine, _, stub = empty_api
    frame = np.full((120, 160), 90, np.uint8)
    frame[40:60, 70:100] = 250  # the defect
    png = cv2.imencode(".png", frame)[1].tobytes()
    blobs = LocalBlobStore(tmp_path)
    uri = blobs.put("img-blob.png", png)
    ref = common_pb2.ImageRef(
        blob_uri=uri,
        encoding="png",
        width=160,
        height=120,
        channels=1,
        sha256=hashlib.sha256(png).hexdigest(),
    )
    contour = ((70, 40), (99, 40), (99, 59), (70, 59))
    defect = ("scratch", (68, 38, 102, 62), contour)
    inline = common_pb2.ImageRef(inline_data=png, encoding="png", width=160, height=120)
    bad = common_pb2.ImageRef(
        blob_uri=blobs.put("img-bad.png", png), encoding="png", sha256="0" * 64
    )
    store(
        engine,
        [
            make("img-blob", verdict=NG, image=ref, defects=(defect,)),
            make("img-inline", verdict=NG, image=inline, defects=(defect,)),
            make("img-bad", image=bad),
            make("img-missing", image=common_pb2.ImageRef(blob_uri=uri + ".gone", encoding="png")),
        ],
    )
    for fid in ("img-blob", "img-inline"):
        img = stub.GetImage(query_pb2.GetImageRequest(frame_id=fid), timeout=10)
        assert (img.png, img.width, img.height) == (png, 160, 120)
        over = stub.GetOverlay(query_pb2.GetImageRequest(frame_id=fid), timeout=10)
        drawn = cv2.imdecode(np.frombuffer(over.png, np.uint8), cv2.IMREAD_COLOR)
        assert drawn.shape == (120, 160, 3)
        assert tuple(drawn[50, 68]) == (0, 0, 255)  # box edge, red
        assert tuple(drawn[50, 70]) == (255, 0, 255)  # contour, magenta
        assert tuple(drawn[100, 20]) == (90, 90, 90)  # untouched background
    listed = stub.ListInspections(query_pb2.ListInspectionsRequest(), timeout=10)
    inline_rec = next(r for r in listed.records if r.inspection.context.frame_id == "img-inline")
    assert not inline_rec.inspection.context.image.inline_data and inline_rec.image_available
    with pytest.raises(grpc.RpcError) as err:
        stub.GetImage(query_pb2.GetImageRequest(frame_id="img-bad"), timeout=10)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    with pytest.raises(grpc.RpcError) as err:
        stub.GetOverlay(query_pb2.GetImageRequest(frame_id="img-missing"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_cursor_order_is_total_across_batches(empty_api):
    """Store order is (tx_id, id): within one batch ids rise, across batches tx ids rise."""
    engine, _, stub = empty_api
    for b in range(3):
        store(engine, [make(f"ord-{b}-{k}") for k in range(4)])
    listed, _, _ = list_all(stub, page_size=5)
    assert listed == [f"ord-{b}-{k}" for b, k in itertools.product(range(3), range(4))]


def test_a_query_stops_in_the_database_when_the_call_deadline_passes(empty_api):
    engine, _, stub = empty_api
    store(engine, [make("locked-1")])
    with engine.connect() as locker:
        tx = locker.begin()
        locker.execute(sa.text("lock table inspections in access exclusive mode"))
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            stub.ListInspections(query_pb2.ListInspectionsRequest(), timeout=1.0)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - t0 < 3

        def waiting() -> int:
            with engine.connect() as conn:
                return conn.execute(
                    sa.text(
                        "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
                        "and datname = current_database()"
                    )
                ).scalar_one()

        deadline = time.monotonic() + 3
        while waiting() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert waiting() == 0, "the server's statement still waits after the deadline"
        tx.rollback()
