"""DefectNet: segmentation, detection and classification heads on frozen Lite0 features.

One small trainable neck on the same frozen EfficientNet-Lite0 patch features as PatchCore
(stride 8 and 16, 152 channels), and three heads, so the backbone runs once per tile:

- seg_logits  [B, K+1, T/8, T/8]  per-cell class logits, class 0 = no defect
- detections  [B, 4+K, T/8*T/8]   YOLOv8/YOLO11 export layout: rows cx, cy, w, h (tile px)
                                   then K class scores after sigmoid -- one anchor-free
                                   prediction per cell, FCOS-style (Tian et al. 2019)
- cls_logits  [B, K+1]            tile class logits, class 0 = good

The outputs are raw (no NMS, no threshold): decoders and thresholds live outside the graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.anomaly.patchcore import PatchFeatures, feature_dim

STRIDE = 8
NECK = 96
CENTRE_RADIUS = 1.5  # in strides


class Heads(nn.Module):
    """Everything trainable: features [B,152,h,w] -> (seg_logits, box ltrb, det logits, cls)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.neck = nn.Sequential(
            nn.Conv2d(feature_dim(), NECK, 3, padding=1),
            nn.BatchNorm2d(NECK),
            nn.ReLU(inplace=True),
            nn.Conv2d(NECK, NECK, 3, padding=1),
            nn.BatchNorm2d(NECK),
            nn.ReLU(inplace=True),
        )
        self.seg = nn.Conv2d(NECK, n_classes + 1, 1)
        self.det_cls = nn.Conv2d(NECK, n_classes, 1)
        self.det_box = nn.Conv2d(NECK, 4, 1)
        self.cls = nn.Linear(2 * NECK, n_classes + 1)
        nn.init.constant_(self.det_cls.bias, -4.6)  # prior 1 % positives (RetinaNet init)

    def forward(self, f: torch.Tensor):
        x = self.neck(f)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        # box: log-distances (in strides) from the cell centre to the left, top, right, bottom
        return self.seg(x), self.det_box(x), self.det_cls(x), self.cls(pooled)


class DefectNet(nn.Module):
    """tiles [B,3,T,T] float16 -> seg_logits, detections, cls_logits (float32)."""

    def __init__(self, heads: Heads, tile: int) -> None:
        super().__init__()
        self.features = PatchFeatures()
        self.heads = heads
        self.tile = tile
        cells = tile // STRIDE
        ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        centres = torch.stack([xs, ys]).float().view(1, 2, -1) * STRIDE + STRIDE / 2
        self.register_buffer("centres", centres, persistent=False)

    def forward(self, tiles: torch.Tensor):
        seg, box, det, cls = self.heads(self.features(tiles))
        b = box.shape[0]
        ltrb = torch.exp(box.clamp(max=6.0)).view(b, 4, -1) * STRIDE
        x0 = self.centres[:, 0] - ltrb[:, 0]
        y0 = self.centres[:, 1] - ltrb[:, 1]
        x1 = self.centres[:, 0] + ltrb[:, 2]
        y1 = self.centres[:, 1] + ltrb[:, 3]
        boxes = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=1)
        scores = torch.sigmoid(det).view(b, self.heads.n_classes, -1)
        return seg, torch.cat([boxes, scores], dim=1), cls


def box_targets(
    boxes: list[tuple[float, float, float, float, int]], cells: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For one tile: (class index per cell or -1, ltrb log-distance targets, positive mask).

    A cell is positive for a box when its centre lies inside the box and within 1.5
    strides of the box centre (FCOS with centre sampling); a box too
    small to contain a centre claims the cell holding its own centre. Where boxes
    overlap, the smaller box wins (FCOS's ambiguity rule)."""
    cls = torch.full((cells * cells,), -1, dtype=torch.long)
    reg = torch.zeros(4, cells * cells)
    area_of = torch.full((cells * cells,), float("inf"))
    c = torch.arange(cells).float() * STRIDE + STRIDE / 2
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    cx, cy = cx.flatten(), cy.flatten()
    for x0, y0, x1, y1, k in boxes:
        # centre sampling (FCOS v2): only cells near the box centre learn it, so edge cells
        # of a long scratch do not propose boxes that miss most of it
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        near = ((cx - mx).abs() <= CENTRE_RADIUS * STRIDE) & (
            (cy - my).abs() <= CENTRE_RADIUS * STRIDE
        )
        inside = (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1) & near
        if not inside.any():
            j = min(cells - 1, int(my // STRIDE)) * cells + min(cells - 1, int(mx // STRIDE))
            inside = torch.zeros_like(inside)
            inside[j] = True
        area = (x1 - x0) * (y1 - y0)
        take = inside & (area < area_of)
        if take.any():
            area_of[take] = area
            cls[take] = k
            d = torch.stack([cx - x0, cy - y0, x1 - cx, y1 - cy]).clamp(min=1.0) / STRIDE
            reg[:, take] = torch.log(d[:, take])
    return cls, reg, cls >= 0


def losses(outputs, targets) -> dict[str, torch.Tensor]:
    seg, box, det, cls = outputs
    seg_t, det_cls_t, reg_t, pos, cls_t = targets
    b, k = det.shape[0], det.shape[1]
    seg_w = torch.ones(seg.shape[1])
    seg_w[1:] = 4.0  # defect cells are rare
    det_logits = det.view(b, k, -1)
    onehot = torch.zeros_like(det_logits)
    idx = det_cls_t.clamp(min=0)
    onehot.scatter_(1, idx.unsqueeze(1), pos.unsqueeze(1).float())
    det_loss = _focal(det_logits, onehot).sum() / pos.sum().clamp(min=1)
    box_pred = box.view(b, 4, -1).permute(0, 2, 1)[pos]
    box_loss = (
        F.smooth_l1_loss(box_pred, reg_t.permute(0, 2, 1)[pos], beta=0.1)
        if pos.any()
        else det_loss * 0
    )
    return {
        "seg": F.cross_entropy(seg, seg_t, weight=seg_w),
        "det": det_loss,
        "box": box_loss,
        "cls": F.cross_entropy(cls, cls_t),
    }


def _focal(logits: torch.Tensor, target: torch.Tensor, alpha=0.25, gamma=2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), elementwise."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    return ce * (1 - pt) ** gamma * (alpha * target + (1 - alpha) * (1 - target))
