"""Fault test: kill -9 every service type, tritonserver and PostgreSQL mid-run; nothing lost,
nothing stored twice, only the deliberately bad frames dead-lettered.

Also runnable as `defectflow chaos`. Bounded: 2 lines x 2 cameras x 120 frames at 1.5 fps
per camera (80 s), seven kills 12 s apart, a drain of at most 150 s; about 2 minutes on
2 cores.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict

import pytest
import sqlalchemy as sa

from services.cli.chaos import KILLS, accepted_frames, run_chaos

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_kill_each_component_mid_run_every_accepted_frame_stored_once(stack):
    truth = stack.workdir / "chaos-accepted.jsonl"
    truth.unlink(missing_ok=True)
    try:
        res = run_chaos(stack, truth_path=truth)
    finally:
        stack.stop_services()
        # leave the shared database as found: the pipeline test counts every record
        ids = [e["frame_id"] for e in accepted_frames(truth)]
        engine = sa.create_engine(stack.postgres.url)
        with contextlib.suppress(sa.exc.SQLAlchemyError), engine.begin() as conn:
            conn.execute(
                sa.text("delete from inspections where frame_id = any(:ids)"), {"ids": ids}
            )
        engine.dispose()
    print("\n" + res.table())
    (stack.workdir / "chaos-result.json").write_text(json.dumps(asdict(res)))
    assert [k.target for k in res.kills] == list(KILLS)
    assert all(k.frames_accepted_before > 0 for k in res.kills), "every kill came mid-run"
    assert res.frames_accepted == 2 * 2 * 120, "ingest restarted without losing or re-emitting"
    assert res.missing == 0, f"{res.missing} accepted frames never reached PostgreSQL"
    assert res.unexpected == 0, f"{res.unexpected} records for frames ingest never accepted"
    assert res.records_stored == res.frames_accepted
    assert res.db_duplicates == 0
    assert res.unexpected_dead_letters == 0, res.dead_letter_reasons
    assert res.bad_inputs_dead_lettered == res.bad_inputs_sent == 6, res.dead_letter_reasons
    assert res.graceful_exit_codes == {
        s: 0 for s in ("tiling", "inference", "postprocess", "store")
    }
