"""`defectflow db` and `defectflow query` against a real PostgreSQL and the query API."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
import sqlalchemy as sa
from defectflow.v1 import common_pb2, inspections_pb2
from typer.testing import CliRunner

from services.cli.main import app
from services.common.blobstore import LocalBlobStore
from services.store.adapters import db, grpc_api
from services.store.config import StoreSettings
from services.store.logic import inspection_row

pytestmark = pytest.mark.integration
TOKEN = "cli-token-0123456789abcdef"


def record(fid: str, verdict: int, image: common_pb2.ImageRef | None = None):
    msg = inspections_pb2.Inspection(
        verdict=verdict,
        context=common_pb2.FrameContext(
            frame_id=fid,
            part_id="P-4711",
            captured_unix_ns=time.time_ns() - 60 * 10**9,
            source=common_pb2.FrameSource(line="line-2", station="s", camera="c"),
        ),
    )
    if image is not None:
        msg.context.image.CopyFrom(image)
    if verdict == 2:
        d = msg.defects.add(defect_class="scratch", score=3.0)
        d.box.x0, d.box.y0, d.box.x1, d.box.y1 = 2, 2, 10, 10
    row, ds = inspection_row(msg, msg.SerializeToString(), time.time_ns())
    return row, ds


def test_db_upgrade_then_query_commands_with_a_token(postgres, tmp_path):
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("drop database if exists store_cli with (force)"))
        conn.execute(sa.text("create database store_cli"))
    admin.dispose()
    url = postgres.url.rsplit("/", 1)[0] + "/store_cli"
    runner = CliRunner()
    res = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert res.exit_code == 0, res.output
    assert "revision 0003" in res.output

    engine = sa.create_engine(url)
    png = cv2.imencode(".png", np.zeros((16, 16), np.uint8))[1].tobytes()
    img = common_pb2.ImageRef(inline_data=png, encoding="png", width=16, height=16)
    rows = [record("cli-ok", 1), record("cli-ng", 2, img)]
    db.write_batch(engine, [r for r, _ in rows], [d for _, d in rows])
    api = grpc_api.serve(
        engine,
        StoreSettings(grpc_address="127.0.0.1:0", blob_root=tmp_path, tokens=f"m:read:{TOKEN}"),
        LocalBlobStore(tmp_path),
    )
    target = ["--target", f"127.0.0.1:{api.port}"]
    env = {"DEFECTFLOW_TOKEN": TOKEN}
    try:
        res = runner.invoke(app, ["query", "list", *target])
        assert res.exit_code == 2 and "UNAUTHENTICATED" in res.output

        res = runner.invoke(app, ["query", "list", *target, "--verdict", "ng"], env=env)
        assert res.exit_code == 0, res.output
        assert "cli-ng" in res.output and "cli-ok" not in res.output and "# cursor " in res.output
        cursor = res.output.split("# cursor ")[1].split()[0]

        res = runner.invoke(app, ["query", "get", "cli-ng", *target, "--token", TOKEN])
        assert res.exit_code == 0 and '"scratch"' in res.output

        res = runner.invoke(app, ["query", "part", "P-4711", *target], env=env)
        assert res.exit_code == 0, res.output
        assert "cli-ok" in res.output and "cli-ng" in res.output

        res = runner.invoke(app, ["query", "stats", *target, "--by-line"], env=env)
        assert res.exit_code == 0, res.output
        assert "line-2" in res.output and "yield  50.0%" in res.output and "scratch 1" in res.output

        for cmd in ("image", "overlay"):
            out = tmp_path / f"{cmd}.png"
            res = runner.invoke(app, ["query", cmd, "cli-ng", "-o", str(out), *target], env=env)
            assert res.exit_code == 0, res.output
            assert cv2.imdecode(np.frombuffer(out.read_bytes(), np.uint8), -1).shape[:2] == (16, 16)

        later = threading.Timer(0.5, lambda: db.write_batch(engine, *zip(record("cli-new", 2))))
        later.start()
        res = runner.invoke(
            app,
            ["query", "watch", *target, "--verdict", "ng", "--cursor", cursor, "--count", "1"],
            env=env,
        )
        later.join()
        assert res.exit_code == 0, res.output
        assert "cli-new" in res.output and "cli-ng" not in res.output
    finally:
        api.stop(0)
        engine.dispose()
