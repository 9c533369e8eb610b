from types import SimpleNamespace

import pytest

from services.common.recipes import RecipeError, load_recipe
from services.common.stage import OffsetTracker
from services.inference.logic import batch_slices
from services.ingest.logic import Pacer


def rec(partition, offset):
    return SimpleNamespace(topic="t", partition=partition, offset=offset)


def test_commit_point_never_passes_a_pending_record():
    t = OffsetTracker()
    t.seen([rec(0, 5), rec(0, 6), rec(0, 7)])
    t.done([rec(0, 5), rec(0, 7)])
    assert list(t.commit_points().values()) == [6]
    t.done([rec(0, 6)])
    assert list(t.commit_points().values()) == [8]


def test_batches_are_even_and_bounded():
    assert [s.stop - s.start for s in batch_slices(17, 16)] == [9, 8]
    assert [s.stop - s.start for s in batch_slices(32, 16)] == [16, 16]
    assert batch_slices(0, 16) == []


def test_pacer_drops_and_counts_when_capture_falls_behind():
    p = Pacer(period_s=0.1, max_lag=2, next_due=0.0)
    assert p.due(0.0) and not p.due(0.05)
    assert p.due(1.0)  # 9 periods late: keep 2, drop the rest
    assert p.dropped == 7


def test_invalid_recipe_names_the_bad_field(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text(
        "id: x\nversion: 1\ntiling: {tile_size: 64, overlap: 64, model_input: 64}\n"
        "model: {name: m}\nthresholds: {pixel: 1, image: 1, review_low: 2}\n"
    )
    with pytest.raises(RecipeError) as err:
        load_recipe(bad)
    assert "tiling" in str(err.value) and "overlap 64 must be smaller" in str(err.value)


def test_unknown_recipe_is_bad_input_naming_the_frame(tmp_path):
    from services.common.errors import BadInput, about_frame
    from services.common.recipes import RecipeBook

    with pytest.raises(BadInput) as err, about_frame("frame-42"):
        RecipeBook(tmp_path).require("no-such-recipe")
    assert err.value.reason == "unknown_recipe" and err.value.frame_id == "frame-42"
    assert "no-such-recipe" in err.value.detail


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://op:s3cret@10.0.0.7:554/line1", "rtsp://op:***@10.0.0.7:554/line1"),
        ("rtsp://op:s3cret@[fe80::1]/cam?x=1", "rtsp://op:***@[fe80::1]/cam?x=1"),
        ("rtsp://10.0.0.7/line1", "rtsp://10.0.0.7/line1"),  # nothing to hide
        ("/dev/video0", "/dev/video0"),
        ("0", "0"),
    ],
)
def test_camera_urls_are_logged_without_their_password(url, shown):
    from services.ingest.logic import redacted

    assert redacted(url) == shown
    assert "s3cret" not in redacted(url)
