"""Detection and classification accuracy of DefectNet on a generated test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.data.mvtec import load_family, read_image, split
from models.eval import metrics
from services.common import decoders
from services.common.domain import Rect
from services.offline.runner import OnnxRunner
from services.postprocess.logic import merge_tile_boxes
from services.tiling.logic import preprocess, tile_grid


class FrameDetector:
    """Tiles a frame, runs DefectNet (onnxruntime), decodes the YOLO-layout output per tile,
    shifts boxes to frame coordinates and merges those cut by tile borders."""

    def __init__(
        self, onnx_path: Path, classes: list[str], tile: int = 128, overlap: int = 16
    ) -> None:
        self.runner = OnnxRunner(onnx_path)
        self.classes, self.tile, self.overlap = classes, tile, overlap

    def __call__(self, image: np.ndarray, score_min: float = 0.05):
        h, w = image.shape[:2]
        rects = tile_grid(Rect(0, 0, w, h), self.tile, self.overlap)
        out = self.runner.run(preprocess(image, rects, self.tile, (0.5,) * 3, (0.5,) * 3))
        per_tile = decoders.yolo(out["detections"], score_min=score_min)
        items = [(r, d) for r, ds in zip(rects, per_tile, strict=True) for d in ds]
        probs = decoders.cls_logits(out["cls_logits"])
        return merge_tile_boxes(items, (w, h)), probs.max(axis=0)


def evaluate_detector(data: Path, onnx_path: Path, classes: list[str]) -> dict:
    samples = split(load_family(Path(data)), "test")
    det = FrameDetector(onnx_path, classes)
    found, truths, typed = [], {}, {}
    correct = total = 0
    for s in samples:
        dets, frame_probs = det(read_image(s))
        truths[s.rel] = list(s.boxes)
        typed[s.rel] = [(b, s.label) for b in s.boxes]
        for d in dets:
            found.append(metrics.Detection(s.rel, d.score, d.box, classes[d.cls]))
        if s.defective:
            total += 1
            correct += classes[int(frame_probs[1:].argmax())] == s.label
    m_ap, per_class = metrics.mean_ap(found, typed)
    return {
        "box_ap50_class_agnostic": metrics.average_precision(found, truths),
        "box_map50": m_ap,
        "box_ap50_per_class": per_class,
        "defect_class_accuracy": correct / max(1, total),
        "defective_images": total,
    }
