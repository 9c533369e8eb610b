"""The console's pure logic: filter forms, the live board, stage latencies, export files."""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq
import pytest

from services.console.adapters.exports import to_csv, to_parquet
from services.console.app import safe_next
from services.console.logic import EXPORT_COLUMNS, Board, ExportRow, FilterForm, stage_latencies


def test_filter_form_becomes_an_inspection_filter():
    form = FilterForm.from_params(
        {
            "line": "line-1, line-2",
            "camera": "",
            "verdict": "review",
            "defect_class": "scratch",
            "since": "2024-05-02T06:00",
            "until": "2024-05-02T14:00:00+02:00",
            "recipe": "brushed",
            "model": "anomaly=3, defectnet=1",
            "reviewed": "unreviewed",
            "page_token": "ignored here",
        }
    )
    f = form.fields()
    assert f["lines"] == ["line-1", "line-2"] and "cameras" not in f
    assert f["verdicts"] == [3] and f["defect_classes"] == ["scratch"]
    assert f["captured_from_unix_ns"] == 1714629600 * 10**9  # 06:00 UTC
    assert f["captured_to_unix_ns"] == 1714651200 * 10**9  # 12:00 UTC
    assert f["model_versions"] == {"anomaly": "3", "defectnet": "1"}
    assert f["review_state"] == 1 and f["recipe_id"] == "brushed"
    assert "verdicts" not in FilterForm(verdict="any").fields()
    assert FilterForm().fields() == {"verdicts": [2]}  # the gallery opens on NG


@pytest.mark.parametrize(
    "bad, word",
    [
        ({"verdict": "bad"}, "verdict"),
        ({"since": "yesterday"}, "since"),
        ({"model": "anomaly"}, "name=version"),
        ({"reviewed": "maybe"}, "reviewed"),
    ],
)
def test_bad_filter_values_say_which_field(bad, word):
    with pytest.raises(ValueError, match=word):
        FilterForm.from_params(bad).fields()


def test_board_counts_yield_rate_and_latest_frames():
    board = Board(rate_window_s=60)
    s = 10**9
    now = 1000 * s
    for i in range(10):  # 10 frames over the last 100 s on cam-1: 6 of them in the last minute
        board.add("line-1", "cam-1", 2 if i == 9 else 1, f"f{i}", now - (100 - 10 * i) * s)
    board.add("line-1", "cam-2", 3, "r1", now - 5 * s)
    snap = board.snapshot(now)
    cam1, cam2 = snap["cameras"]
    assert (cam1["count"], cam1["ok"], cam1["ng"], cam1["review"]) == (10, 9, 1, 0)
    assert cam1["yield"] == pytest.approx(0.9)
    assert cam1["rate_per_min"] == pytest.approx(6.0)
    assert [f["frame_id"] for f in cam1["latest"]] == ["f9", "f8", "f7", "f6"]
    assert cam1["latest"][0]["verdict"] == "NG"
    assert cam2["review"] == 1
    assert snap["total"]["count"] == 11 and snap["total"]["review"] == 1
    assert snap["total"]["yield"] == pytest.approx(9 / 11)
    assert board.snapshot(now + 120 * s)["total"]["rate_per_min"] == 0.0  # a quiet line decays


def test_stage_latencies_split_waiting_from_handling():
    ms = 10**6
    t = stage_latencies(
        1000 * ms,
        [
            ("ingest", 1001 * ms, 1003 * ms, "i"),
            ("tiling", 1010 * ms, 1015 * ms, "t"),
            ("inference", 1020 * ms, 1060 * ms, "n"),
        ],
    )
    assert [(x.stage, x.waited_ms, x.handled_ms) for x in t] == [
        ("ingest", 1.0, 2.0),
        ("tiling", 7.0, 5.0),
        ("inference", 5.0, 40.0),
    ]


def row(i: int) -> ExportRow:
    return ExportRow(
        f"f{i}", "", "line-1", "st", "cam", "2024-01-01T00:00:00+00:00", "", "r", 2,
        "anomaly=1", "NG", 3.5 + i, True, 1, "scratch", 0.25, "OK", "", "anna", "", 'dust, "wiped"',
    )  # fmt: skip


def test_exports_round_trip_as_csv_and_parquet():
    rows = [row(0), row(1)]
    parsed = list(csv.reader(io.StringIO(to_csv(rows).decode())))
    assert parsed[0] == list(EXPORT_COLUMNS)
    assert parsed[1][EXPORT_COLUMNS.index("review_comment")] == 'dust, "wiped"'
    table = pq.read_table(io.BytesIO(to_parquet(rows)))
    assert table.column_names == list(EXPORT_COLUMNS)
    assert table.column("score").to_pylist() == [3.5, 4.5]
    assert table.column("recipe_version").type.bit_width == 32
    assert pq.read_table(io.BytesIO(to_parquet([]))).num_rows == 0


def test_sign_in_redirects_stay_on_the_console():
    assert safe_next("/gallery?verdict=ng") == "/gallery?verdict=ng"
    assert safe_next("https://evil.example/") == "/"
    assert safe_next("//evil.example/") == "/"
