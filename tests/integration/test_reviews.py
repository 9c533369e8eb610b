"""Human reviews through the gRPC API against a real PostgreSQL: stored beside the machine
verdict (who, when, why), never overwriting it; roles; filters; and the thresholds that
`defectflow calibrate --from-reviews` computes from them."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import sqlalchemy as sa
from defectflow.v1 import common_pb2, inspections_pb2, query_pb2, query_pb2_grpc
from typer.testing import CliRunner

from services.cli.main import app
from services.cli.reviews import calibrate_from_reviews
from services.common.blobstore import LocalBlobStore
from services.common.recipes import load_recipe, save_recipe
from services.store.adapters import db, grpc_api
from services.store.config import StoreSettings
from services.store.logic import RetentionPolicy, inspection_row

pytestmark = pytest.mark.integration

OK, NG, REVIEW = 1, 2, 3
MES = "mes-token-0123456789abcdef"
ANNA = "anna-token-0123456789abcdef"
ADMIN = "root-token-0123456789abcdef"
TOKENS = f"mes:read:{MES},anna:reviewer:{ANNA},root:admin:{ADMIN}"
T0 = time.time_ns() - 3600 * 10**9


def msg(
    frame_id: str, verdict: int, score: float, recipe: str = "brushed"
) -> inspections_pb2.Inspection:
    m = inspections_pb2.Inspection(
        schema_version=1,
        verdict=verdict,
        score=score,
        complete=True,
        context=common_pb2.FrameContext(
            frame_id=frame_id,
            recipe_id=recipe,
            recipe_version=1,
            captured_unix_ns=T0,
            source=common_pb2.FrameSource(line="line-1", station="st", camera="cam-1"),
        ),
    )
    if verdict == NG:
        m.defects.add(defect_class="scratch", score=score, area_px=40, area_mm2=0.4)
    return m


def store(engine, msgs) -> None:
    pairs = [inspection_row(m, m.SerializeToString(), time.time_ns()) for m in msgs]
    rows, children = zip(*pairs, strict=True)
    db.write_batch(engine, rows, children)


@pytest.fixture(scope="module")
def engine(postgres):
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("drop database if exists store_reviews with (force)"))
        conn.execute(sa.text("create database store_reviews"))
    admin.dispose()
    eng = sa.create_engine(postgres.url.rsplit("/", 1)[0] + "/store_reviews", pool_pre_ping=True)
    db.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture()
def api(engine, tmp_path):
    with engine.begin() as conn:
        conn.execute(sa.text("truncate inspections cascade"))
    s = StoreSettings(
        database_url=engine.url.render_as_string(hide_password=False),
        grpc_address="127.0.0.1:0",
        blob_root=tmp_path,
        tokens=TOKENS,
    )
    running = grpc_api.serve(engine, s, LocalBlobStore(tmp_path))
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield query_pb2_grpc.InspectionQueryStub(channel), running.port
    channel.close()
    running.stop(0)


def auth(token: str):
    return [("authorization", f"Bearer {token}")]


def submit(stub, token, frame_id, disposition, defect_class="", comment=""):
    return stub.SubmitReview(
        query_pb2.SubmitReviewRequest(
            frame_id=frame_id, disposition=disposition, defect_class=defect_class, comment=comment
        ),
        metadata=auth(token),
        timeout=10,
    )


def code(fn) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_a_review_is_stored_beside_the_verdict_with_who_when_why(api, engine):
    stub, _ = api
    store(engine, [msg("r-1", REVIEW, 4.2)])
    before = time.time_ns()
    first = submit(stub, ANNA, "r-1", NG, "scratch", "visible under the light")
    assert (first.reviewer, first.reviewer_role) == ("anna", "reviewer")
    assert before <= first.reviewed_unix_ns <= time.time_ns()
    assert (first.machine_verdict, round(first.machine_score, 3)) == (REVIEW, 4.2)
    second = submit(stub, ADMIN, "r-1", OK, "", "re-checked: dust, wiped off")
    assert second.review_id > first.review_id

    rec = stub.GetInspection(
        query_pb2.GetInspectionRequest(frame_id="r-1"), metadata=auth(MES), timeout=10
    )
    assert rec.inspection.verdict == REVIEW, "the machine verdict is never overwritten"
    assert [(r.disposition, r.defect_class, r.reviewer, r.comment) for r in rec.reviews] == [
        (NG, "scratch", "anna", "visible under the light"),
        (OK, "", "root", "re-checked: dust, wiped off"),
    ]
    # the stored protobuf payload is untouched too
    with engine.connect() as conn:
        payload = conn.execute(
            sa.text("select payload, verdict from inspections where frame_id = 'r-1'")
        ).one()
    assert payload.verdict == REVIEW
    assert inspections_pb2.Inspection.FromString(payload.payload).verdict == REVIEW

    listed = stub.ListInspections(
        query_pb2.ListInspectionsRequest(), metadata=auth(MES), timeout=10
    )
    assert [len(r.reviews) for r in listed.records] == [2]


def test_roles_decide_who_may_review(api, engine):
    stub, _ = api
    store(engine, [msg("r-2", REVIEW, 3.0)])
    assert code(lambda: submit(stub, MES, "r-2", OK)) == grpc.StatusCode.PERMISSION_DENIED
    assert code(lambda: submit(stub, "no-such-token-000000", "r-2", OK)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert code(lambda: submit(stub, ANNA, "r-2", OK)) == grpc.StatusCode.OK
    who = stub.WhoAmI(query_pb2.WhoAmIRequest(), metadata=auth(ANNA), timeout=10)
    assert (who.name, who.role, who.authenticated) == ("anna", "reviewer", True)
    assert stub.WhoAmI(query_pb2.WhoAmIRequest(), metadata=auth(MES), timeout=10).role == "read"


def test_bad_reviews_are_refused_with_the_reason(api, engine):
    stub, _ = api
    store(engine, [msg("r-3", NG, 9.0)])
    cases = [
        (lambda: submit(stub, ANNA, "r-3", NG, ""), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: submit(stub, ANNA, "r-3", OK, "scratch"), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: submit(stub, ANNA, "r-3", REVIEW), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: submit(stub, ANNA, "r-3", OK, "", "x" * 2001), grpc.StatusCode.INVALID_ARGUMENT),
        (lambda: submit(stub, ANNA, "nope", OK), grpc.StatusCode.NOT_FOUND),
    ]
    assert [code(fn) for fn, _ in cases] == [want for _, want in cases]
    rec = stub.GetInspection(
        query_pb2.GetInspectionRequest(frame_id="r-3"), metadata=auth(MES), timeout=10
    )
    assert not rec.reviews


def test_review_filters_and_the_audit_sample(api, engine):
    stub, _ = api
    store(engine, [msg(f"s-{i:04d}", OK if i % 3 else NG, 1.0) for i in range(600)])
    submit(stub, ANNA, "s-0000", OK, "", "false reject")
    submit(stub, ANNA, "s-0001", NG, "dent", "")
    submit(stub, ANNA, "s-0001", OK, "", "no, it is fine")  # the latest counts

    def ids(**kw) -> list[str]:
        out, token = [], ""
        while True:
            r = stub.ListInspections(
                query_pb2.ListInspectionsRequest(
                    filter=query_pb2.InspectionFilter(**kw), page_size=1000, page_token=token
                ),
                metadata=auth(MES),
                timeout=10,
            )
            out += [x.inspection.context.frame_id for x in r.records]
            token = r.next_page_token
            if not token:
                return out

    assert sorted(ids(review_state=query_pb2.REVIEW_STATE_REVIEWED)) == ["s-0000", "s-0001"]
    assert len(ids(review_state=query_pb2.REVIEW_STATE_UNREVIEWED)) == 598
    assert sorted(ids(reviewed_dispositions=[OK])) == ["s-0000", "s-0001"]
    assert ids(reviewed_dispositions=[NG]) == []
    sample = ids(sample_fraction=0.1)
    assert 30 <= len(sample) <= 90, len(sample)  # ~60 of 600
    assert ids(sample_fraction=0.1) == sample, "the audit sample is the same every time"
    assert set(ids(sample_fraction=0.2)) >= set(sample), "a larger sample contains a smaller"
    assert code(lambda: ids(sample_fraction=1.5)) == grpc.StatusCode.INVALID_ARGUMENT


def test_reviews_go_with_their_record_under_retention(api, engine):
    stub, _ = api
    store(engine, [msg("old-1", OK, 1.0)])
    submit(stub, ANNA, "old-1", OK)
    n, _ = db.apply_retention(engine, RetentionPolicy(records_ok_days=0.01), time.time_ns(), None)
    assert n == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from reviews")).scalar_one() == 0


def test_calibrate_from_reviews_changes_with_a_review(api, engine, tmp_path):
    stub, port = api
    rng = np.random.default_rng(3)
    # float32: the score as the Inspection message carries it
    good = rng.normal(2.0, 0.3, 40).astype(np.float32)
    bad = rng.normal(6.0, 0.5, 10).astype(np.float32)
    msgs = [msg(f"g-{i}", OK, s) for i, s in enumerate(good)]
    msgs += [msg(f"b-{i}", NG, s) for i, s in enumerate(bad)]
    msgs += [msg("edge", REVIEW, 3.4), msg("other", OK, 1.0, recipe="other-recipe")]
    store(engine, msgs)
    for i in range(40):
        submit(stub, ANNA, f"g-{i}", OK)
    recipe = tmp_path / "brushed.yaml"
    template = load_recipe(next(p for p in _recipes() if p.stem == "brushed-metal"))
    save_recipe(template.model_copy(update={"id": "brushed", "version": 1}), recipe)
    target = f"127.0.0.1:{port}"

    # good parts only: target false-reject order statistic, no escape rate
    only_good = calibrate_from_reviews(recipe, target, MES, write=False)
    assert only_good.labelled.good.size == 40 and only_good.labelled.defective.size == 0
    assert only_good.escape_rate is None
    assert only_good.choice.threshold >= good.max()  # 40 parts: too few for FRR <= 1 %

    # the defective parts labelled: F1-optimal, between the two groups
    for i in range(10):
        submit(stub, ANNA, f"b-{i}", NG, "scratch")
    both = calibrate_from_reviews(recipe, target, MES, write=False)
    assert "F1-optimal" in both.choice.method
    assert good.max() < both.choice.threshold <= bad.min()
    assert (both.false_reject_rate, both.escape_rate) == (0.0, 0.0)

    # one more review moves it: the REVIEW part at 3.4 was a real defect
    submit(stub, ANNA, "edge", NG, "scratch", "faint but real")
    after = calibrate_from_reviews(recipe, target, MES)
    assert after.choice.threshold == pytest.approx(3.4, abs=1e-5)
    assert after.choice.threshold < both.choice.threshold
    written = load_recipe(recipe)
    assert written.version == 2
    assert written.thresholds.image == pytest.approx(after.choice.threshold)
    assert written.thresholds.review_low < written.thresholds.image
    assert "40 OK, 11 NG" in after.summary()
    assert "escape rate on the reviewed defective parts: 0.00%" in after.summary()

    # the same through the command line
    res = CliRunner().invoke(
        app,
        ["calibrate", "--from-reviews", "--recipe", str(recipe), "--target", target],
        env={"DEFECTFLOW_TOKEN": MES},
    )
    assert res.exit_code == 0, res.output
    assert "40 OK, 11 NG" in res.output
    assert load_recipe(recipe).version == 3


def _recipes():
    return sorted((Path(__file__).resolve().parents[2] / "models" / "recipes").glob("*.yaml"))
