"""PatchCore on EfficientNet-Lite0 features (Roth et al. 2022, "Towards Total Recall in
Industrial Anomaly Detection"; MVTec AD image AUROC 99.1 with a WideResNet-50 backbone).

Fit on good tiles only: every tile position yields a patch descriptor (Lite0 blocks at
stride 8 and 16, each averaged over its 3x3 neighbourhood, the stride-16 map upsampled,
concatenated: 152 values); a greedy k-center coreset keeps a small memory bank that still
covers all of them. At inference the anomaly map is each patch's distance to its nearest
bank entry, upsampled to the tile and smoothed (sigma 4 px, as in the paper); the tile
score is the map's maximum. No threshold inside the graph: thresholds live in the recipe.

With a context margin C (recipe tiling.context) the input is the tile's window of
T + 2C pixels: features are computed over the whole window, so a patch at the tile's
edge is described by the part around it and not by padding, and the feature map is cut
to the tile before the nearest-neighbour search (DESIGN.md: worth about 0.04 image AUROC
against features cut at tile and ROI edges).

Contract (same as every defectflow anomaly model, see models/triton/build.py):
  tiles [B,3,T+2C,T+2C] float16 (RGB, (x/255 - 0.5) / 0.5)
  -> anomaly_map [B,1,T,T] float16, score [B,1] float32
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.anomaly.local_stats import gauss_kernel
from models.backbone.lite0 import TAP_STRIDE4, TAP_STRIDE8, TAP_STRIDE16, lite0_features

SMOOTH_SIGMA = 4.0
# stride 8: PatchCore's mid-level pair; stride 4 adds the stage-2 block for defects a few
# pixels wide (a stride-8 patch averages them away with 60 px of texture around them)
TAPS = {8: (TAP_STRIDE8, TAP_STRIDE16), 4: (TAP_STRIDE4, TAP_STRIDE8, TAP_STRIDE16)}


def feature_dim(stride: int = 8) -> int:
    return sum(t.channels for t in TAPS[stride])


class PatchFeatures(nn.Module):
    """windows [B,3,T+2C,T+2C] -> patch descriptors of the tile [B,D,T/s,T/s] (float32),
    s = 8 (D = 152) or 4 (D = 176)."""

    def __init__(self, context: int = 0, stride: int = 8) -> None:
        super().__init__()
        if stride not in TAPS:
            raise ValueError(f"feature stride {stride} is not one of {sorted(TAPS)}")
        if context % TAP_STRIDE16.stride:
            raise ValueError(f"context {context} must be a multiple of {TAP_STRIDE16.stride}")
        self.taps = TAPS[stride]
        self.backbone = lite0_features(self.taps)
        self.cut = context // stride

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        maps = self.backbone(tiles.float())
        size = maps[0].shape[-2:]
        pooled = []
        for tap, m in zip(self.taps, maps, strict=True):
            m = F.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=False)
            if tap.stride != self.taps[0].stride:
                m = F.interpolate(m, size=size, mode="bilinear", align_corners=False)
            pooled.append(m)
        f = torch.cat(pooled, dim=1)
        if self.cut:
            f = f[:, :, self.cut : f.shape[2] - self.cut, self.cut : f.shape[3] - self.cut]
        return f


class PatchCore(nn.Module):
    def __init__(self, bank: torch.Tensor, tile: int, context: int = 0, stride: int = 8) -> None:
        super().__init__()
        self.features = PatchFeatures(context, stride)
        self.tile = tile
        self.context = context
        self.stride = stride
        self.register_buffer("bank", bank.float().contiguous())  # [M, D]
        self.register_buffer("bank_sq", (bank.float() ** 2).sum(1).view(1, 1, -1))
        k = gauss_kernel(SMOOTH_SIGMA)
        self.pad = k.numel() // 2
        self.register_buffer("kx", k.view(1, 1, 1, -1), persistent=False)
        self.register_buffer("ky", k.view(1, 1, -1, 1), persistent=False)

    def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(tiles)
        b, d, h, w = f.shape
        q = f.flatten(2).transpose(1, 2)  # [B, h*w, D]
        # squared distances to every bank entry without materialising differences
        d2 = (q**2).sum(-1, keepdim=True) - 2.0 * torch.matmul(q, self.bank.t()) + self.bank_sq
        nearest = torch.sqrt(torch.clamp(d2.amin(dim=-1), min=0.0)).view(b, 1, h, w)
        amap = F.interpolate(nearest, size=(self.tile, self.tile), mode="bilinear")
        amap = F.conv2d(F.pad(amap, (self.pad, self.pad, 0, 0), mode="replicate"), self.kx)
        amap = F.conv2d(F.pad(amap, (0, 0, self.pad, self.pad), mode="replicate"), self.ky)
        return amap.half(), amap.amax(dim=(2, 3))


@torch.no_grad()
def patch_descriptors(
    tiles: np.ndarray, context: int = 0, stride: int = 8, batch: int = 32
) -> torch.Tensor:
    """All patch descriptors [N*h*w, D] of good tiles' windows [N,3,T+2C,T+2C]."""
    feats = PatchFeatures(context, stride).eval()
    out = []
    for i in range(0, len(tiles), batch):
        f = feats(torch.as_tensor(tiles[i : i + batch]))
        out.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
    return torch.cat(out)


@torch.no_grad()
def greedy_coreset(
    x: torch.Tensor,
    size: int,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """k-center greedy selection (Sener & Savarese 2018), as PatchCore subsamples its bank:
    each step takes the point farthest from everything chosen so far. Returns indices."""
    n = x.shape[0]
    if size >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.empty(size, dtype=torch.long)
    chosen[0] = torch.randint(n, (1,), generator=gen)
    x_sq = (x**2).sum(1)
    mind = torch.full((n,), float("inf"))
    for i in range(1, size):
        c = x[chosen[i - 1]]
        d = x_sq - 2.0 * (x @ c) + (c**2).sum()
        torch.minimum(mind, d, out=mind)
        chosen[i] = torch.argmax(mind)
        if progress and (i % 256 == 0 or i == size - 1):
            progress(i + 1, size)
    return chosen


def fit_patchcore(
    good_tiles: np.ndarray,
    tile: int,
    context: int = 0,
    stride: int = 8,
    bank_size: int = 4096,
    max_patches: int = 200_000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> PatchCore:
    """Memory bank from good tiles' windows [N,3,T+2C,T+2C] (float16, normalised like the
    recipe says)."""
    desc = patch_descriptors(good_tiles, context, stride)
    if len(desc) > max_patches:  # bound memory and time on small machines
        gen = torch.Generator().manual_seed(seed)
        desc = desc[torch.randperm(len(desc), generator=gen)[:max_patches]]
    idx = greedy_coreset(desc, bank_size, seed=seed, progress=progress)
    return PatchCore(desc[idx], tile, context, stride).eval()
