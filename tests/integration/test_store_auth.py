"""Bearer-token auth and TLS of the query API (real PostgreSQL behind it)."""

from __future__ import annotations

import subprocess
import time

import grpc
import pytest
import sqlalchemy as sa
from defectflow.v1 import common_pb2, inspections_pb2, query_pb2, query_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.blobstore import LocalBlobStore
from services.store.adapters import db, grpc_api
from services.store.config import StoreSettings
from services.store.logic import inspection_row

pytestmark = pytest.mark.integration

MES = "mes-token-0123456789abcdef"
OPS = "ops-token-fedcba9876543210"
FILED = "file-token-aaaaaaaaaaaaaaaa"


@pytest.fixture(scope="module")
def engine(postgres):
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("drop database if exists store_auth with (force)"))
        conn.execute(sa.text("create database store_auth"))
    admin.dispose()
    eng = sa.create_engine(postgres.url.rsplit("/", 1)[0] + "/store_auth", pool_pre_ping=True)
    db.upgrade(eng)
    msg = inspections_pb2.Inspection(
        verdict=1,
        context=common_pb2.FrameContext(
            frame_id="auth-1", source=common_pb2.FrameSource(line="l", station="s", camera="c")
        ),
    )
    row, ds = inspection_row(msg, msg.SerializeToString(), 1)
    db.write_batch(eng, [row], [ds])
    yield eng
    eng.dispose()


def serve(engine, tmp_path, **kw) -> grpc_api.RunningApi:
    s = StoreSettings(
        database_url=engine.url.render_as_string(hide_password=False),
        grpc_address="127.0.0.1:0",
        blob_root=tmp_path,
        **kw,
    )
    return grpc_api.serve(engine, s, LocalBlobStore(tmp_path))


@pytest.fixture()
def secured(engine, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# mounted secret\nline3:read:{FILED}\n")
    api = serve(engine, tmp_path, tokens=f"mes:read:{MES},ops:admin:{OPS}", tokens_file=tokens)
    channel = grpc.insecure_channel(f"127.0.0.1:{api.port}")
    yield query_pb2_grpc.InspectionQueryStub(channel), channel
    channel.close()
    api.stop(0)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def code_of(call) -> grpc.StatusCode:
    try:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            for _ in result:
                break
    except grpc.RpcError as err:
        return err.code()
    return grpc.StatusCode.OK


def test_calls_without_a_valid_token_are_refused(secured):
    stub, _ = secured
    get = query_pb2.GetInspectionRequest(frame_id="auth-1")
    for metadata in (
        None,
        bearer("wrong-token-0000000000"),
        [("authorization", f"Basic {MES}")],
        [("authorization", MES)],
        bearer(""),
    ):
        assert code_of(lambda m=metadata: stub.GetInspection(get, timeout=5, metadata=m)) == (
            grpc.StatusCode.UNAUTHENTICATED
        ), metadata
    # the streaming method is guarded the same way
    watch = query_pb2.WatchInspectionsRequest()
    assert code_of(lambda: stub.WatchInspections(watch, timeout=5)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.ListInspections(query_pb2.ListInspectionsRequest(), timeout=5)
    assert "authorization" in err.value.details()


def test_read_tokens_query_and_only_admin_runs_retention(secured):
    stub, _ = secured
    get = query_pb2.GetInspectionRequest(frame_id="auth-1")
    for token in (MES, OPS, FILED):
        rec = stub.GetInspection(get, timeout=5, metadata=bearer(token))
        assert rec.inspection.context.frame_id == "auth-1"
    run = query_pb2.RunRetentionRequest()
    for token in (MES, FILED):
        with pytest.raises(grpc.RpcError) as err:
            stub.RunRetention(run, timeout=5, metadata=bearer(token))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "admin" in err.value.details()
    done = stub.RunRetention(run, timeout=5, metadata=bearer(OPS))
    assert (done.records_deleted, done.images_deleted) == (0, 0)  # no policy configured


def test_health_checking_needs_no_token(secured):
    _, channel = secured
    health = health_pb2_grpc.HealthStub(channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service=grpc_api.SERVICE_NAME), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_a_rotated_tokens_file_takes_effect_without_restart(engine, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"line3:read:{FILED}\n")
    api = serve(engine, tmp_path, tokens_file=tokens)
    stub = query_pb2_grpc.InspectionQueryStub(grpc.insecure_channel(f"127.0.0.1:{api.port}"))
    try:
        req = query_pb2.ListInspectionsRequest()
        assert stub.ListInspections(req, timeout=5, metadata=bearer(FILED)).records
        rotated = "rotated-token-bbbbbbbbbbbb"
        tokens.write_text(f"line3:read:{rotated}\n")
        deadline = time.monotonic() + 15
        while code_of(lambda: stub.ListInspections(req, timeout=5, metadata=bearer(FILED))) == (
            grpc.StatusCode.OK
        ):
            assert time.monotonic() < deadline, "old token still accepted after rotation"
            time.sleep(0.5)
        assert stub.ListInspections(req, timeout=5, metadata=bearer(rotated)).records
    finally:
        api.stop(0)


def test_no_tokens_refuses_to_start_unless_asked_to_run_open_on_loopback(engine, tmp_path):
    with pytest.raises(ValueError, match="has no tokens"):
        serve(engine, tmp_path)
    with pytest.raises(ValueError, match="holds no name:role:token entry"):
        serve(engine, tmp_path, tokens=" , # none")


def test_an_open_api_on_loopback_answers_with_a_warning(engine, tmp_path, caplog):
    api = serve(engine, tmp_path, open_api=True)
    try:
        stub = query_pb2_grpc.InspectionQueryStub(grpc.insecure_channel(f"127.0.0.1:{api.port}"))
        get = query_pb2.GetInspectionRequest(frame_id="auth-1")
        assert stub.GetInspection(get, timeout=5).inspection.context.frame_id == "auth-1"
        assert any("WITHOUT authentication" in r.getMessage() for r in caplog.records)
    finally:
        api.stop(0)


def test_tls_with_a_token(engine, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    api = serve(engine, tmp_path, tokens=f"mes:read:{MES}", tls_cert_file=cert, tls_key_file=key)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        secure = grpc.secure_channel(f"127.0.0.1:{api.port}", creds)
        stub = query_pb2_grpc.InspectionQueryStub(secure)
        get = query_pb2.GetInspectionRequest(frame_id="auth-1")
        assert stub.GetInspection(get, timeout=5, metadata=bearer(MES)).inspection.verdict == 1
        assert code_of(lambda: stub.GetInspection(get, timeout=5)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
        plain = query_pb2_grpc.InspectionQueryStub(grpc.insecure_channel(f"127.0.0.1:{api.port}"))
        assert code_of(lambda: plain.GetInspection(get, timeout=3, metadata=bearer(MES))) == (
            grpc.StatusCode.UNAVAILABLE
        )
    finally:
        api.stop(0)
