"""A stock PatchCore, written as a user would write it from the paper, to measure the
product against (Roth et al. 2022, "Towards Total Recall in Industrial Anomaly
Detection", CVPR).

Whole image at once (no tiling, no preprocessing beyond RGB in [-1, 1]); patch
descriptors from EfficientNet-Lite0 at stride 8 and 16, each averaged over its 3x3
neighbourhood, the stride-16 map bilinearly upsampled to stride 8 and concatenated;
a memory bank of 1 % of all training patches chosen by greedy k-center coreset;
the anomaly map is each patch's L2 distance to its nearest bank entry, bilinearly
upsampled to the image and smoothed with a Gaussian (sigma 4 px). With an ROI the map
is zero outside it and the image score is the map's maximum inside it.

Its threshold is the maximum of its scores on held-out good parts x 1.05, the rule the
product's fit uses (without the product's review band: one threshold, as a user has).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.anomaly.patchcore import greedy_coreset
from models.backbone.lite0 import TAP_STRIDE8, TAP_STRIDE16, lite0_features
from models.data.mvtec import load_family, read_image, split
from models.eval.report import score_metrics
from services.common.recipes import Roi

BANK_FRACTION = 0.01
SMOOTH_SIGMA = 4.0
THRESHOLD_FACTOR = 1.05


class StockFeatures(torch.nn.Module):
    """BGR uint8 image -> patch descriptors [h/8 * w/8, 152]."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = lite0_features((TAP_STRIDE8, TAP_STRIDE16))

    @torch.no_grad()
    def forward(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32)
        x = torch.from_numpy((rgb / 255.0 - 0.5) / 0.5).permute(2, 0, 1)[None]
        f8, f16 = self.backbone(x)
        f8 = F.avg_pool2d(f8, 3, stride=1, padding=1)
        f16 = F.avg_pool2d(f16, 3, stride=1, padding=1)
        f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        f = torch.cat([f8, f16], dim=1)[0]
        return f.flatten(1).t().contiguous(), (f.shape[1], f.shape[2])


@dataclass(frozen=True)
class Prediction:
    anomaly_map: np.ndarray  # float32, image size, zero outside the ROI
    score: float


class StockPatchCore:
    def __init__(
        self, bank: torch.Tensor, roi: Roi | None = None, features: StockFeatures | None = None
    ) -> None:
        self.features = features or StockFeatures().eval()
        self.bank = bank.float().contiguous()
        self.bank_sq = (self.bank**2).sum(1)
        self.roi = roi

    @classmethod
    def fit(
        cls,
        good: Sequence[np.ndarray],
        roi: Roi | None = None,
        fraction: float = BANK_FRACTION,
        seed: int = 0,
        progress: Callable[[int, int], None] | None = None,
    ) -> StockPatchCore:
        """Memory bank from every patch of the good images (the whole images; the ROI only
        masks the scores)."""
        if not good:
            raise ValueError("the stock PatchCore needs at least one good image to fit on")
        feats = StockFeatures().eval()
        desc = torch.cat([feats(img)[0] for img in good])
        size = max(1, int(round(fraction * len(desc))))
        idx = greedy_coreset(desc, size, seed=seed, progress=progress)
        return cls(desc[idx], roi, feats)

    @torch.no_grad()
    def predict(self, image: np.ndarray) -> Prediction:
        h, w = image.shape[:2]
        q, (fh, fw) = self.features(image)
        d2 = (q**2).sum(1, keepdim=True) - 2.0 * (q @ self.bank.t()) + self.bank_sq[None]
        nearest = torch.sqrt(torch.clamp(d2.amin(dim=1), min=0.0)).view(1, 1, fh, fw)
        up = F.interpolate(nearest, size=(h, w), mode="bilinear", align_corners=False)
        amap = cv2.GaussianBlur(up[0, 0].numpy(), (0, 0), SMOOTH_SIGMA)
        if self.roi is not None:
            inside = np.zeros((h, w), bool)
            r = self.roi
            inside[r.y : r.y + r.height, r.x : r.x + r.width] = True
            amap = np.where(inside, amap, 0.0).astype(np.float32)
            score = float(amap[inside].max())
        else:
            score = float(amap.max())
        return Prediction(amap, score)

    def threshold(self, held_out_good: Sequence[np.ndarray]) -> float:
        """Maximum score on held-out good images x 1.05."""
        if not held_out_good:
            raise ValueError("calibrating the stock PatchCore needs held-out good images")
        return max(self.predict(img).score for img in held_out_good) * THRESHOLD_FACTOR


def evaluate_baseline(
    data: Path,
    model: StockPatchCore,
    threshold: float,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """The stock model on a family folder's test split: the same threshold-free figures
    as the product's report, plus false-reject and escape rates at `threshold`."""
    samples = split(load_family(Path(data)), "test")
    if not samples:
        raise FileNotFoundError(f"{data}/test holds no images")
    scores, maps = [], []
    for n, s in enumerate(samples, 1):
        p = model.predict(read_image(s))
        scores.append(p.score)
        maps.append(p.anomaly_map)
        if progress:
            progress(n, len(samples))
    good = [sc for s, sc in zip(samples, scores, strict=True) if not s.defective]
    bad = [(s, sc) for s, sc in zip(samples, scores, strict=True) if s.defective]
    escaped: dict[str, list[int]] = {}
    for s, sc in bad:
        e = escaped.setdefault(s.label, [0, 0])
        e[0] += sc <= threshold
        e[1] += 1
    return {
        "images": {"good": len(good), "defective": len(bad)},
        **score_metrics(samples, scores, maps, model.roi),
        "threshold": {"image": threshold, "method": f"max_normal x{THRESHOLD_FACTOR}"},
        "false_reject_rate": sum(sc > threshold for sc in good) / max(1, len(good)),
        "escape_rate": sum(sc <= threshold for _, sc in bad) / max(1, len(bad)),
        "escapes_by_type": {k: f"{e}/{n}" for k, (e, n) in sorted(escaped.items())},
    }
