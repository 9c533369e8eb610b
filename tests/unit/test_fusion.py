"""Anomaly regions and detector boxes fused into defect records."""

import pytest

from services.common.decoders import Det
from services.common.domain import DefectRecord
from services.postprocess.logic import fuse

CLASSES = ["scratch", "hole"]


def region(box, score=30.0):
    area = (box[2] - box[0]) * (box[3] - box[1])
    return DefectRecord("anomaly", score, box, area, area * 0.01, ())


def test_the_detector_names_what_the_anomaly_model_located():
    recs, dis = fuse([region((10, 10, 50, 14))], [Det(8, 9, 52, 15, 0.8, 0)], CLASSES, 0.5, 0.1)
    assert [(r.defect_class, r.source, r.box) for r in recs] == [
        ("scratch", "anomaly+detector", (10, 10, 50, 14))
    ]
    assert dis == []


def test_an_unexplained_region_stays_an_anomaly():
    recs, dis = fuse([region((10, 10, 20, 20))], [], CLASSES, 0.5, 0.1)
    assert recs[0].defect_class == "anomaly" and dis == []


def test_a_sure_detection_without_a_region_is_a_record_and_a_disagreement():
    recs, dis = fuse([], [Det(100, 100, 110, 110, 0.9, 1)], CLASSES, 0.5, 0.1)
    assert recs[0].defect_class == "hole" and recs[0].source == "detector"
    assert recs[0].area_mm2 == pytest.approx(100 * 0.01)
    assert len(dis) == 1 and "hole" in dis[0]


def test_a_weak_detection_without_a_region_is_ignored():
    recs, dis = fuse([], [Det(100, 100, 110, 110, 0.3, 1)], CLASSES, 0.5, 0.1)
    assert recs == [] and dis == []


def test_the_strongest_overlapping_box_decides_the_class():
    recs, _ = fuse(
        [region((10, 10, 30, 30))],
        [Det(10, 10, 30, 30, 0.6, 0), Det(12, 12, 28, 28, 0.9, 1)],
        CLASSES,
        0.5,
        0.1,
    )
    assert len(recs) == 1 and recs[0].defect_class == "hole"
