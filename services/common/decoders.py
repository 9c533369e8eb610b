"""Decoders: raw model outputs of the supported export formats -> plain arrays and boxes.

Selected per model in the recipe (`model.decoder`), so a user can bring their own model:

- defectflow_anomaly : anomaly_map [B,1,T,T] + score [B,1]          (our PatchCore export)
- anomalib           : anomaly_map [B,1,H,W] or [B,H,W] + pred_score [B] or [B,1]
                       (anomalib's ONNX/OpenVINO export; pred_label/pred_mask are ignored:
                       thresholds are ours, never baked into the model)
- yolo               : [B, 4+C, N], rows cx, cy, w, h in input pixels, then C class scores
                       (Ultralytics YOLOv8 / YOLO11 detection export, no NMS in the graph)
- seg_logits         : [B, K+1, h, w] class logits, class 0 = background
- cls_logits         : [B, K+1] class logits, class 0 = good

Every decoder checks shapes and finiteness and raises BadInput("bad_model_output", ...)
instead of passing garbage on to a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.common.errors import BadInput

DECODERS = ("defectflow_anomaly", "anomalib", "yolo", "seg_logits", "cls_logits")


@dataclass(frozen=True)
class Det:
    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    cls: int

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    def shifted(self, dx: float, dy: float) -> Det:
        return Det(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy, self.score, self.cls)


def _finite(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if not np.isfinite(a).all():
        raise BadInput("bad_model_output", f"{name} contains NaN or Inf")
    return a


def _bad(msg: str) -> BadInput:
    return BadInput("bad_model_output", msg)


def anomaly_maps(outputs: dict[str, np.ndarray], decoder: str, n: int):
    """(maps [n,1,H,W] float32, scores [n] float32) from an anomaly model's outputs."""
    if "anomaly_map" not in outputs:
        raise _bad(f"{decoder}: no output 'anomaly_map' (got {sorted(outputs)})")
    amap = _finite("anomaly_map", outputs["anomaly_map"]).astype(np.float32)
    if amap.ndim == 3:
        amap = amap[:, None]
    if amap.ndim != 4 or amap.shape[0] != n or amap.shape[1] != 1:
        raise _bad(f"{decoder}: anomaly_map shape {amap.shape}, expected [{n},1,H,W]")
    key = "score" if decoder == "defectflow_anomaly" else "pred_score"
    if key in outputs:
        score = _finite(key, outputs[key]).astype(np.float32).reshape(-1)
        if score.shape != (n,):
            raise _bad(f"{decoder}: {key} shape {outputs[key].shape}, expected [{n}] or [{n},1]")
    else:
        score = amap.reshape(n, -1).max(axis=1)
    return amap, score


def yolo(
    out: np.ndarray, score_min: float = 0.25, iou_max: float = 0.5, max_det: int = 300
) -> list[list[Det]]:
    """Per image: class-aware NMS'd boxes (xyxy, input pixels) with score >= score_min."""
    out = _finite("detections", out).astype(np.float32)
    if out.ndim == 2:
        out = out[None]
    if out.ndim != 3 or out.shape[1] < 5:
        raise _bad(f"yolo: output shape {out.shape}, expected [B, 4+C, N] with C >= 1")
    results = []
    for pred in out:
        scores_all = pred[4:]
        cls = scores_all.argmax(axis=0)
        score = scores_all.max(axis=0)
        keep = np.nonzero(score >= score_min)[0]
        if keep.size == 0:
            results.append([])
            continue
        cx, cy, w, h = pred[:4, keep]
        boxes_xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
        idx = cv2.dnn.NMSBoxesBatched(
            boxes_xywh.tolist(), score[keep].tolist(), cls[keep].tolist(), score_min, iou_max
        )
        dets = [
            Det(
                float(boxes_xywh[i, 0]),
                float(boxes_xywh[i, 1]),
                float(boxes_xywh[i, 0] + boxes_xywh[i, 2]),
                float(boxes_xywh[i, 1] + boxes_xywh[i, 3]),
                float(score[keep][i]),
                int(cls[keep][i]),
            )
            for i in np.asarray(idx, dtype=np.int64).reshape(-1)
        ]
        dets.sort(key=lambda d: -d.score)
        results.append(dets[:max_det])
    return results


def softmax(logits: np.ndarray, axis: int) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def seg_logits(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(defect probability [B,1,h,w] = 1 - p(background), class map [B,h,w] with 0 = none)."""
    logits = _finite("seg_logits", logits).astype(np.float32)
    if logits.ndim != 4 or logits.shape[1] < 2:
        raise _bad(f"seg_logits: shape {logits.shape}, expected [B, K+1, h, w] with K >= 1")
    p = softmax(logits, axis=1)
    return (1.0 - p[:, :1]), p.argmax(axis=1)


def cls_logits(logits: np.ndarray) -> np.ndarray:
    """Class probabilities [B, K+1] (column 0 = good)."""
    logits = _finite("cls_logits", logits).astype(np.float32)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise _bad(f"cls_logits: shape {logits.shape}, expected [B, K+1] with K >= 1")
    return softmax(logits, axis=1)


def detector_boxes(
    outputs: dict[str, np.ndarray], decoder: str, score_min: float, n: int
) -> list[list[Det]]:
    """Per tile, the boxes of a detector recipe entry (model-input pixels).

    defectnet: our DefectNet's `detections` output (YOLO layout); yolo: an Ultralytics
    export, whose single output is named `output0` (any single output is accepted)."""
    if decoder == "defectnet":
        if "detections" not in outputs:
            raise _bad(f"defectnet: no output 'detections' (got {sorted(outputs)})")
        raw = outputs["detections"]
    elif decoder == "yolo":
        raw = outputs.get("output0")
        if raw is None:
            if len(outputs) != 1:
                raise _bad(f"yolo: expected one output or 'output0', got {sorted(outputs)}")
            raw = next(iter(outputs.values()))
    else:
        raise _bad(f"unknown detector decoder {decoder!r}")
    boxes = yolo(raw, score_min=score_min)
    if len(boxes) != n:
        raise _bad(f"{decoder}: {len(boxes)} images decoded for {n} tiles")
    return boxes


def scale(d: Det, sx: float, sy: float) -> Det:
    """Model-input pixels -> tile pixels (tiles are resized to the model input)."""
    return Det(d.x0 * sx, d.y0 * sy, d.x1 * sx, d.y1 * sy, d.score, d.cls)
