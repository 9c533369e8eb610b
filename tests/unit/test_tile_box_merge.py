"""Boxes cut by tile borders come back as one box; distinct defects stay apart."""

import pytest

from services.common.decoders import Det
from services.common.domain import TileRect
from services.postprocess.logic import merge_tile_boxes

LEFT = TileRect(0, 0, 128, 128, 0)
RIGHT = TileRect(112, 0, 128, 128, 1)  # 16 px overlap
FRAME = (240, 128)


def test_a_scratch_across_a_border_is_one_box_covering_both_parts():
    # a scratch from x=60 to x=200 at y~50: the left tile sees 60..128, the right 112..200
    left = Det(60, 45, 128, 55, 0.9, 0)
    right = Det(0, 44, 88, 56, 0.7, 0)  # right tile coordinates: 112..200
    (box,) = merge_tile_boxes([(LEFT, left), (RIGHT, right)], FRAME)
    assert box.box == pytest.approx((60, 44, 200, 56)) and box.score == 0.9


def test_a_defect_seen_twice_in_the_overlap_is_one_box():
    a = Det(114, 10, 124, 20, 0.8, 2)
    b = Det(2, 10, 12, 20, 0.6, 2)  # the same pixels, right tile coordinates
    (box,) = merge_tile_boxes([(LEFT, a), (RIGHT, b)], FRAME)
    assert box.box == pytest.approx((114, 10, 124, 20))


def test_distinct_defects_are_not_merged():
    items = [
        (LEFT, Det(10, 10, 20, 20, 0.9, 0)),
        (LEFT, Det(40, 40, 50, 50, 0.8, 0)),  # separate, same tile
        (LEFT, Det(60, 45, 128, 55, 0.9, 1)),  # cut by the border
        (RIGHT, Det(20, 100, 40, 120, 0.7, 0)),  # elsewhere in the right tile
    ]
    assert len(merge_tile_boxes(items, FRAME)) == 4


def test_one_place_is_one_defect_whatever_each_tile_calls_it():
    # left tile says scratch (0), right tile says crack (1): one box, the stronger class
    (box,) = merge_tile_boxes(
        [(LEFT, Det(60, 45, 128, 55, 0.6, 1)), (RIGHT, Det(0, 44, 88, 56, 0.9, 0))], FRAME
    )
    assert box.cls == 0 and box.box == pytest.approx((60, 44, 200, 56))


def test_a_weak_proposal_does_not_inflate_a_strong_box():
    strong = Det(60, 45, 128, 55, 0.9, 0)
    weak = Det(0, 0, 60, 100, 0.2, 0)  # touches the cut box, but scores far lower
    merged = merge_tile_boxes([(LEFT, strong), (RIGHT, weak)], FRAME)
    assert merged[0].box == pytest.approx((60, 45, 128, 55)) and len(merged) == 2


def test_boxes_are_clipped_to_their_tile():
    (box,) = merge_tile_boxes([(RIGHT, Det(-20, 10, 30, 20, 0.9, 0))], FRAME)
    assert box.box == pytest.approx((112, 10, 142, 20))


def test_a_box_at_the_frame_border_is_not_cut():
    # touching the frame's own edge is not a tile cut: no merge with an overlapping box
    a = Det(100, 0, 127, 30, 0.9, 0)  # touches x=128 of the left tile (inner border: cut)
    b = Det(20, 100, 30, 128, 0.8, 0)  # bottom edge of the frame: not a cut
    merged = merge_tile_boxes([(LEFT, a), (RIGHT, b)], FRAME)
    assert len(merged) == 2
