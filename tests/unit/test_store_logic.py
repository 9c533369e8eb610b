"""Pure store logic: cursors, filters, shifts, retention cut-offs, rows, tokens, overlay."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from defectflow.v1 import common_pb2, inspections_pb2

from services.common.domain import DefectRecord
from services.store.adapters.auth import TokenBook, parse_entries
from services.store.logic import (
    NS_PER_DAY,
    Cursor,
    Filter,
    RetentionPolicy,
    decode_cursor,
    inspection_row,
    page_size,
    rates,
    shift_minutes,
    shift_number,
)
from services.store.overlay import draw_overlay


def test_cursors_round_trip_and_order_by_transaction_then_row():
    c = Cursor(123456789012, 42)
    assert decode_cursor(c.encode()) == c
    assert Cursor(5, 900) < Cursor(6, 1) < Cursor(6, 2)
    assert Cursor.frontier(7) > Cursor(6, 10**12) and Cursor.frontier(7) < Cursor(7, 1)


@pytest.mark.parametrize("token", ["", "abc", "e30=", Cursor(-1, 0).encode()])
def test_bad_cursors_say_what_to_pass(token):
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(token)


def test_page_size_defaults_and_caps():
    assert page_size(0, 1000) == 100
    assert page_size(5, 1000) == 5
    assert page_size(5000, 1000) == 1000
    assert page_size(0, 50) == 50


@pytest.mark.parametrize(
    "flt",
    [
        Filter(verdicts=(0,)),
        Filter(verdicts=(4,)),
        Filter(captured_from_ns=10, captured_to_ns=10),
        Filter(captured_from_ns=-1),
        Filter(lines=("",)),
        Filter(defect_classes=("scratch", "")),
    ],
)
def test_filters_that_match_nothing_by_mistake_are_refused(flt):
    with pytest.raises(ValueError):
        flt.check()


def test_good_filters_pass():
    assert Filter(verdicts=(1, 2), captured_from_ns=1, captured_to_ns=2).check()
    assert Filter(captured_to_ns=5).check()


def test_shift_numbers_wrap_over_midnight():
    starts = shift_minutes(["22:00", "06:00", "14:00"])
    assert starts == (360, 840, 1320)
    assert [shift_number(m, starts) for m in (0, 359, 360, 839, 840, 1319, 1320, 1439)] == [
        3, 3, 1, 1, 2, 2, 3, 3,
    ]  # fmt: skip
    for bad in (["24:00"], ["6"], [], ["06:00", "6:00"]):
        with pytest.raises(ValueError):
            shift_minutes(bad)


def test_retention_keeps_ng_and_review_longer_and_zero_keeps_forever():
    now = 1000 * NS_PER_DAY
    records, images = RetentionPolicy(30, 90, 7, 0).cutoffs(now)
    assert [(c.verdicts, c.before_ns) for c in records] == [
        ((1,), now - 30 * NS_PER_DAY),
        ((2, 3, 0), now - 90 * NS_PER_DAY),
    ]
    assert [(c.verdicts, c.before_ns) for c in images] == [((1,), now - 7 * NS_PER_DAY)]
    assert RetentionPolicy().cutoffs(now) == ([], [])
    with pytest.raises(ValueError):
        RetentionPolicy(-1).check()


def test_rates():
    r = rates(8, 6, 1, 1)
    assert (r.yield_, r.ng_rate, r.review_rate) == (0.75, 0.125, 0.125)
    assert rates(0, 0, 0, 0).yield_ == 0.0


def test_inline_images_move_out_of_the_payload():
    msg = inspections_pb2.Inspection(
        verdict=2,
        context=common_pb2.FrameContext(
            frame_id="f", image=common_pb2.ImageRef(inline_data=b"PNGDATA" * 100, encoding="png")
        ),
    )
    d = msg.defects.add(defect_class="dent", score=2.0)
    d.contour.add(x=1, y=2)
    row, defects = inspection_row(msg, msg.SerializeToString(), 5)
    assert row["image_data"] == b"PNGDATA" * 100 and row["image_uri"] == ""
    slim = inspections_pb2.Inspection.FromString(row["payload"])
    assert not slim.context.image.HasField("inline_data") and slim.context.image.encoding == "png"
    assert len(row["payload"]) < 100
    assert defects[0]["contour"] == [[1.0, 2.0]]


def test_token_entries_and_roles():
    book = parse_entries("mes:read:aaaaaaaaaaaaaaaa, ops:admin:bbbbbbbbbbbbbbbb # ops", "env")
    assert sorted((p.name, p.role) for p in book.values()) == [("mes", "read"), ("ops", "admin")]
    assert "aaaaaaaaaaaaaaaa" not in str(book)  # only digests are kept
    for bad in ("mes:aaaaaaaaaaaaaaaa", "mes:write:aaaaaaaaaaaaaaaa", "mes:read:short"):
        with pytest.raises(ValueError):
            parse_entries(bad, "env")


def test_token_file_is_reread_when_it_changes(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("a:read:aaaaaaaaaaaaaaaa\n")
    book = TokenBook("", f, recheck_s=0)
    assert book.lookup("aaaaaaaaaaaaaaaa").name == "a"
    f.write_text("b:admin:cccccccccccccccccc\n")
    import os

    os.utime(f, ns=(1, 10**18))
    assert book.lookup("aaaaaaaaaaaaaaaa") is None
    assert book.lookup("cccccccccccccccccc").role == "admin"
    f.write_text("broken")
    os.utime(f, ns=(1, 2 * 10**18))
    assert book.lookup("cccccccccccccccccc").role == "admin"  # last good set kept
    assert TokenBook().empty and not book.empty


def test_overlay_draws_box_and_contour_on_a_mono_frame():
    image = np.full((100, 100), 50, np.uint8)
    d = DefectRecord("scratch", 1.0, (20, 30, 60, 70), 10, 0.1, ((25, 35), (55, 35), (55, 65)))
    out = draw_overlay(image, [d], 2)
    assert out.shape == (100, 100, 3) and image[50, 20] == 50  # input untouched
    assert tuple(out[50, 20]) == (0, 0, 255)
    assert tuple(out[35, 40]) == (255, 0, 255)
    assert tuple(out[90, 90]) == (50, 50, 50)


def test_a_comma_in_a_comment_is_not_a_token_separator():
    text = "# MES and ops tokens, rotated monthly\nmes:read:aaaaaaaaaaaaaaaa  # line 2, read only\n"
    assert [p.name for p in parse_entries(text, "file").values()] == ["mes"]


@pytest.mark.parametrize(
    "error",
    [
        sa.exc.DisconnectionError("server gone"),
        sa.exc.InvalidatePoolError(),
        sa.exc.TimeoutError("pool exhausted"),
        sa.exc.OperationalError("insert", {}, Exception("connection refused")),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_database_that_is_down_means_retry_the_batch_never_dead_letter(monkeypatch, error):
    """Every way SQLAlchemy says "no database" must be a Transient (the stage rewinds and
    redoes the batch): anything else would be treated as a poison record."""
    from kafka.consumer.fetcher import ConsumerRecord

    from services.common.errors import Transient
    from services.store import main as store_main

    def down(*_a, **_k):
        raise error

    monkeypatch.setattr(store_main.db, "write_batch", down)
    msg = inspections_pb2.Inspection(
        schema_version=1,
        context=common_pb2.FrameContext(frame_id="f1", recipe_id="r"),
        verdict=inspections_pb2.VERDICT_OK,
    )
    record = ConsumerRecord(
        "defectflow.inspections.v1",
        0,
        -1,
        1,
        0,
        0,
        b"k",
        msg.SerializeToString(),
        [],
        None,
        1,
        1,
        -1,
    )
    with pytest.raises(Transient):
        store_main.StoreHandler(engine=None).handle([record])


@pytest.mark.parametrize("setting", [" ", ",", "# only a comment", "\n , \n"])
def test_a_tokens_setting_without_entries_refuses_instead_of_running_open(setting):
    with pytest.raises(ValueError, match="holds no name:role:token entry"):
        TokenBook(setting)


@pytest.mark.parametrize(
    ("tokens", "open_api", "address", "refusal"),
    [
        ("", False, "127.0.0.1:50051", "has no tokens"),  # nothing configured: closed
        ("", True, "0.0.0.0:50051", "loopback only"),  # open, but reachable from the network
        ("", True, "[::]:50051", "loopback only"),
        ("", True, "10.1.2.3:50051", "loopback only"),
        ("m:read:aaaaaaaaaaaaaaaa", True, "127.0.0.1:50051", "choose one"),
    ],
)
def test_the_query_api_fails_closed(tokens, open_api, address, refusal):
    from services.store.adapters.auth import open_or_refuse

    with pytest.raises(ValueError, match=refusal):
        open_or_refuse(TokenBook(tokens), open_api, address)


@pytest.mark.parametrize("address", ["127.0.0.1:0", "localhost:50051", "[::1]:50051"])
def test_an_open_api_is_allowed_on_loopback_when_asked_for(address):
    from services.store.adapters.auth import open_or_refuse

    open_or_refuse(TokenBook(), True, address)  # does not raise
    open_or_refuse(TokenBook("m:read:aaaaaaaaaaaaaaaa"), False, "0.0.0.0:50051")
