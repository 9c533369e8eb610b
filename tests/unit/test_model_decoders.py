"""Decoders for bring-your-own models, on synthetic tensors of exactly the exported shapes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from services.common import decoders
from services.common.errors import BadInput


def yolo_output(boxes, n_classes=3, n=8400):
    """A YOLOv8/11 export tensor [1, 4+C, N]: given rows (cx, cy, w, h, cls, score), zeros
    elsewhere -- the layout Ultralytics writes."""
    out = np.zeros((1, 4 + n_classes, n), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(boxes):
        out[0, :4, i] = (cx, cy, w, h)
        out[0, 4 + cls, i] = score
    return out


def test_yolo_keeps_the_best_of_overlapping_boxes_per_class_and_converts_to_xyxy():
    out = yolo_output(
        [
            (100, 100, 40, 20, 1, 0.9),
            (102, 101, 40, 20, 1, 0.8),  # same object, same class: suppressed
            (102, 101, 40, 20, 2, 0.7),  # same place, other class: kept (class-aware NMS)
            (300, 50, 10, 10, 0, 0.2),  # below score_min
        ]
    )
    (dets,) = decoders.yolo(out, score_min=0.25, iou_max=0.5)
    assert [(d.cls, round(d.score, 2)) for d in dets] == [(1, 0.9), (2, 0.7)]
    assert dets[0].box == pytest.approx((80.0, 90.0, 120.0, 110.0))


def test_yolo_accepts_an_unbatched_output_and_an_empty_image():
    assert decoders.yolo(yolo_output([])[0]) == [[]]


@pytest.mark.parametrize(
    "outputs",
    [
        {"anomaly_map": np.ones((2, 64, 64), np.float32), "pred_score": np.ones(2, np.float32)},
        {"anomaly_map": np.ones((2, 1, 64, 64), np.float32), "pred_score": np.ones((2, 1))},
    ],
)
def test_anomalib_exports_in_both_shapes(outputs):
    maps, scores = decoders.anomaly_maps(outputs, "anomalib", 2)
    assert maps.shape == (2, 1, 64, 64) and scores.shape == (2,)


def test_anomalib_labels_and_masks_are_ignored_thresholds_are_ours():
    outputs = {
        "anomaly_map": np.zeros((1, 8, 8), np.float32),
        "pred_score": np.array([0.7], np.float32),
        "pred_label": np.array([True]),
        "pred_mask": np.ones((1, 8, 8), bool),
    }
    _, scores = decoders.anomaly_maps(outputs, "anomalib", 1)
    assert scores.tolist() == pytest.approx([0.7])


def test_seg_logits_give_defect_probability_and_class_map():
    logits = np.zeros((1, 3, 2, 2), np.float32)
    logits[0, 2, 0, 1] = 10.0  # class 2 at (0, 1); elsewhere uniform
    prob, classes = decoders.seg_logits(logits)
    assert prob.shape == (1, 1, 2, 2) and classes[0, 0, 1] == 2
    assert prob[0, 0, 0, 1] > 0.99 and prob[0, 0, 0, 0] == pytest.approx(2 / 3)


def test_cls_logits_are_probabilities():
    p = decoders.cls_logits(np.array([[0.0, 2.0, -1.0]], np.float32))
    assert p.sum() == pytest.approx(1.0) and p.argmax() == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda: decoders.yolo(np.full((1, 7, 10), np.nan, np.float32)),
        lambda: decoders.yolo(np.zeros((1, 4, 10), np.float32)),  # no class rows
        lambda: decoders.seg_logits(np.zeros((1, 3, 4), np.float32)),
        lambda: decoders.cls_logits(np.array([[np.inf, 0.0]])),
        lambda: decoders.anomaly_maps({"score": np.zeros(1)}, "defectflow_anomaly", 1),
        lambda: decoders.anomaly_maps(
            {"anomaly_map": np.zeros((3, 1, 4, 4)), "score": np.zeros((3, 1))},
            "defectflow_anomaly",
            2,
        ),
    ],
)
def test_bad_model_outputs_are_bad_input_with_a_reason(call):
    with pytest.raises(BadInput) as exc:
        call()
    assert exc.value.reason == "bad_model_output"


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(0, 12)),
        elements=st.one_of(
            st.floats(-1e6, 1e6, width=32), st.sampled_from([np.nan, np.inf, -np.inf])
        ),
    )
)
def test_yolo_decoder_never_fails_other_than_bad_input(out):
    try:
        result = decoders.yolo(out)
    except BadInput:
        return
    assert len(result) == out.shape[0]
    assert all(np.isfinite(d.box).all() for dets in result for d in dets)
