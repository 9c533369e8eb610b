"""Fit-time augmentation with the nuisance a line adds to every part.

A memory bank fitted on one afternoon's parts has seen one lighting, one focus and one
placement; the line then drifts (lamps age, lenses defocus, fixtures wear). Copies of
the good images with that nuisance drawn wider than a stable line shows let the bank
cover it, so drift reads as normal and only the part's own anomalies stand out. Each
copy is a pure function of (image, seed).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


def line_nuisance(image: np.ndarray, seed: int) -> np.ndarray:
    """One copy of a uint8 image (mono or BGR) with gain, colour-gain, gradient and
    vignetting changes, a small rotation and shift, defocus and sensor noise."""
    rng = np.random.default_rng(seed)
    img = image.astype(np.float32)
    h, w = img.shape[:2]
    chans = 1 if img.ndim == 2 else img.shape[2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.5 * max(h, w)) ** 2
    light = (1.0 + rng.uniform(0.0, 0.3) * ramp) * (1.0 - rng.uniform(0.0, 0.15) * r2)
    light *= rng.uniform(0.85, 1.15)
    colour = rng.uniform(0.94, 1.06, chans).astype(np.float32)
    img = img * (light[:, :, None] * colour if img.ndim == 3 else light * colour[0])
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-4.0, 4.0)), 1.0)
    rot[:, 2] += rng.uniform(-8.0, 8.0, 2)
    img = cv2.warpAffine(img, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    sigma = float(rng.uniform(0.0, 1.5))
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0.0, rng.uniform(0.5, 3.5), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def with_nuisance(images: list[np.ndarray], copies: int, seed: int) -> list[np.ndarray]:
    """The images followed by `copies` nuisance copies of each."""
    return with_copies(images, copies, seed, line_nuisance)


def photometric_drift(image: np.ndarray, seed: int) -> np.ndarray:
    """A copy as the same camera sees the part when its focus and sensor noise drift
    (defocus sigma 0.5-1.5 px, noise sigma 1-3.5): what calibration must still call good.
    No geometric change, so no mirrored borders reach the model's context."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(image.astype(np.float32), (0, 0), float(rng.uniform(0.5, 1.5)))
    img = img + rng.normal(0.0, rng.uniform(1.0, 3.5), img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def with_drift(images: list[np.ndarray], copies: int, seed: int) -> list[np.ndarray]:
    """The images followed by `copies` photometric-drift copies of each."""
    return with_copies(images, copies, seed, photometric_drift)


def with_copies(
    images: list[np.ndarray], copies: int, seed: int, make: Callable[[np.ndarray, int], np.ndarray]
) -> list[np.ndarray]:
    """The images followed by `copies` copies of each made by `make(image, seed)`."""
    extra = [
        make(img, seed * 1_000_003 + c * 10_007 + i)
        for c in range(copies)
        for i, img in enumerate(images)
    ]
    return list(images) + extra
