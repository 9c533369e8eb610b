"""The simplest honest anomaly model: a Gaussian over local filter responses of good parts.

Each pixel gets a small feature vector (a band-pass response and the local
texture energy, both from fixed Gaussian filters, so illumination gradients
cancel); the mean and covariance of those features are fitted on good tiles
only, and the anomaly map is the Mahalanobis distance of each pixel's features
(PaDiM's idea, Defard et al. 2020, with fixed filters instead of a CNN and one
Gaussian shared by all positions, which tolerates shifts). No threshold inside:
the graph outputs raw scores; thresholds live in the recipe.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LUMA = (0.299, 0.587, 0.114)  # R, G, B (tiles are RGB, normalised to [0, 1] by tiling)


def gauss_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


class _Blur(nn.Module):
    def __init__(self, sigma: float) -> None:
        super().__init__()
        k = gauss_kernel(sigma)
        self.pad = k.numel() // 2
        self.register_buffer("kx", k.view(1, 1, 1, -1), persistent=False)
        self.register_buffer("ky", k.view(1, 1, -1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad, self.pad, 0, 0), mode="reflect")
        x = F.conv2d(x, self.kx)
        x = F.pad(x, (0, 0, self.pad, self.pad), mode="reflect")
        return F.conv2d(x, self.ky)


class LocalFeatures(nn.Module):
    """[B,3,H,W] RGB in [0,1] -> [B,2,H,W] features in grey levels."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        self.fine = _Blur(1.5)
        self.coarse = _Blur(6.0)
        self.energy = _Blur(2.0)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        g = (rgb * self.luma).sum(dim=1, keepdim=True) * 255.0
        fine = self.fine(g)
        band = fine - self.coarse(g)
        texture = torch.sqrt(self.energy((g - fine) ** 2) + 1e-6)
        return torch.cat([band, texture], dim=1)


class LocalStatsAnomaly(nn.Module):
    """tiles [B,3,H,W] float16 -> anomaly_map [B,1,H,W] float16, score [B,1] float32."""

    def __init__(self, mean: np.ndarray, inv_cov: np.ndarray, context: int = 0) -> None:
        super().__init__()
        self.context = context  # margin cut off the map: the input is the tile's window
        self.features = LocalFeatures()
        self.smooth = _Blur(1.0)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_cov", torch.as_tensor(inv_cov, dtype=torch.float32))

    def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(tiles.float()) - self.mean
        # Mahalanobis distance per pixel: sqrt(f^T S^-1 f)
        proj = torch.einsum("ij,bjhw->bihw", self.inv_cov, f)
        d = torch.sqrt(torch.clamp((f * proj).sum(dim=1, keepdim=True), min=0.0))
        amap = self.smooth(d)
        c = self.context
        if c:
            amap = amap[:, :, c : amap.shape[2] - c, c : amap.shape[3] - c]
        score = amap.amax(dim=(2, 3))
        return amap.half(), score


@torch.no_grad()
def fit_gaussian(
    tiles: np.ndarray, max_pixels: int = 2_000_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse covariance of the features of good tiles [N,3,H,W] (float16/32)."""
    feats = LocalFeatures()
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, len(tiles), 64):
        f = feats(torch.as_tensor(tiles[start : start + 64]).float())
        f = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).numpy()
        chunks.append(f)
    all_f = np.concatenate(chunks)
    if len(all_f) > max_pixels:
        all_f = all_f[rng.choice(len(all_f), max_pixels, replace=False)]
    mean = all_f.mean(axis=0)
    cov = np.cov(all_f, rowvar=False) + 1e-3 * np.eye(all_f.shape[1])
    return mean.astype(np.float32), np.linalg.inv(cov).astype(np.float32)
