"""Registration of a structured part to the good parts' reference (recipe
`preprocess.registration`).

The ROI is scaled so that its longer side is `size` px, turned grey, and aligned to the
reference by maximising the enhanced correlation coefficient (ECC; G. Evangelidis and
E. Psarakis, "Parametric Image Alignment Using Enhanced Correlation Coefficient
Maximization", IEEE TPAMI 2008; OpenCV's findTransformECC). ECC is invariant to a global
gain and offset, and it runs after the flat field, so light changes do not move it. The
whole frame is then warped into the reference's coordinates, so that every tile shows
the same place of the part on every frame; `part_to_frame` maps the anomaly map back.

An alignment fails when ECC does not converge, its correlation is below the recipe's
minimum, or the part moved or turned further than the recipe allows (a misplaced part
or the wrong part): the frame is then scored unaligned and its verdict is REVIEW with
that reason.
"""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from services.common.domain import Rect
from services.common.errors import BadInput
from services.common.recipes import Registration

# 1e-4 px of warp change at 256 px is far below what the model notices; it halves the
# iterations of 1e-5 for the same correlation (measured: 0.92386 against 0.92385)
ECC_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-4)
SURE_CC = 0.9  # a start that ends this well is kept without trying the other
ECC_BLUR = 5  # findTransformECC's Gaussian pre-filter (px at the registration scale)
MOTIONS = {"translation": cv2.MOTION_TRANSLATION, "euclidean": cv2.MOTION_EUCLIDEAN}


@dataclass(frozen=True)
class Alignment:
    part_to_frame: np.ndarray  # 2x3 float64: reference (part) coordinates -> frame pixels
    correlation: float
    shift_px: float  # displacement of the ROI's centre, frame px
    rotation_deg: float
    failure: str | None  # why the frame did not align; None when it did


def scale_for(roi: Rect, size: int) -> float:
    return size / max(roi.width, roi.height)


def grey_roi(image: np.ndarray, roi: Rect, size: int) -> np.ndarray:
    """The ROI, grey, float32, its longer side scaled to `size` px."""
    area = image[roi.y : roi.y1, roi.x : roi.x1]
    if area.ndim == 3:
        area = cv2.cvtColor(area, cv2.COLOR_BGR2GRAY)
    s = scale_for(roi, size)
    dsize = (max(8, round(roi.width * s)), max(8, round(roi.height * s)))
    return cv2.resize(area, dsize, interpolation=cv2.INTER_AREA).astype(np.float32)


def encode_reference(reference: np.ndarray) -> str:
    ok, png = cv2.imencode(".png", np.clip(reference + 0.5, 0, 255).astype(np.uint8))
    if not ok:
        raise ValueError("cannot encode the registration reference as PNG")
    return base64.b64encode(png.tobytes()).decode("ascii")


@functools.lru_cache(maxsize=16)
def decode_reference(text: str) -> np.ndarray:
    try:
        png = np.frombuffer(base64.b64decode(text, validate=True), np.uint8)
    except ValueError as exc:
        raise ValueError(f"registration reference is not base64: {exc}") from exc
    ref = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
    if ref is None:
        raise ValueError("registration reference is not a PNG image")
    return ref.astype(np.float32)


def ecc(reference: np.ndarray, moving: np.ndarray, motion: str) -> tuple[float, np.ndarray]:
    """(correlation, 2x3 warp) with moving(warp(x)) ~ reference(x), both at one scale;
    raises cv2.error when the iteration does not converge, BadInput when the two differ
    in size (the recipe's ROI is not the one its reference was fitted on)."""
    if reference.shape != moving.shape:
        raise BadInput(
            "recipe_roi_changed",
            f"registration reference is {reference.shape[1]}x{reference.shape[0]} px, "
            f"the frame's ROI scales to {moving.shape[1]}x{moving.shape[0]}: "
            "the ROI changed since fit; fit again",
        )
    # ECC refines from a start inside its basin. Two starts: the shift phase correlation
    # finds (robust to shifts of many pixels, where ECC alone stops in a wrong optimum,
    # but ambiguous on periodic parts), then, unless that ended at SURE_CC or better,
    # where the part was (no motion); the higher correlation wins. Both OpenCV calls may change
    # their inputs in place (phaseCorrelate applies its window to them): each gets
    # copies, and the cached reference stays as it is.
    window = _hann(reference.shape)
    (dx, dy), _ = cv2.phaseCorrelate(reference.copy(), moving.copy(), window=window.copy())
    best: tuple[float, np.ndarray] | None = None
    error: cv2.error | None = None
    for start in ((dx, dy), (0.0, 0.0)):
        if best is not None and best[0] >= SURE_CC:
            break
        warp = np.array([[1.0, 0.0, start[0]], [0.0, 1.0, start[1]]], np.float32)
        try:
            cc, warp = cv2.findTransformECC(
                reference.copy(), moving.copy(), warp, MOTIONS[motion], ECC_CRITERIA, None, ECC_BLUR
            )
        except cv2.error as exc:
            error = exc
            continue
        if best is None or cc > best[0]:
            best = (float(cc), warp)
    if best is None:
        assert error is not None
        raise error
    return best


@functools.lru_cache(maxsize=16)
def _hann(shape: tuple[int, int]) -> np.ndarray:
    return cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)


def align(image: np.ndarray, roi: Rect, reg: Registration) -> Alignment:
    """How the frame's part lies against the reference (the recipe must carry one)."""
    if reg.reference is None:
        raise BadInput(
            "recipe_unfitted",
            "the recipe asks for registration but has no reference: run `defectflow fit`",
        )
    reference = decode_reference(reg.reference)
    identity = np.eye(2, 3)
    try:
        cc, warp = ecc(reference, grey_roi(image, roi, reg.size), reg.motion)
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "no convergence"
        return Alignment(
            identity, 0.0, 0.0, 0.0, f"registration failed: ECC did not converge ({reason})"
        )
    s = scale_for(roi, reg.size)
    a = warp[:, :2].astype(np.float64)
    origin = np.array([roi.x, roi.y], np.float64)
    offset = warp[:, 2].astype(np.float64) / s + origin - a @ origin
    part_to_frame = np.hstack([a, offset[:, None]])
    centre = origin + np.array([roi.width, roi.height]) / 2.0
    shift = float(np.hypot(*(a @ centre + offset - centre)))
    rotation = math.degrees(math.atan2(a[1, 0], a[0, 0]))
    failure = None
    if cc < reg.min_correlation:
        failure = f"registration failed: correlation {cc:.2f} < {reg.min_correlation:.2f}"
    elif shift > reg.max_shift_px:
        failure = f"registration failed: part shifted {shift:.1f} px > {reg.max_shift_px:g} px"
    elif abs(rotation) > reg.max_rotation_deg:
        failure = (
            f"registration failed: part turned {rotation:.1f} deg > {reg.max_rotation_deg:g} deg"
        )
    if failure:
        return Alignment(identity, cc, shift, rotation, failure)
    return Alignment(part_to_frame, cc, shift, rotation, None)


def to_part(image: np.ndarray, part_to_frame: np.ndarray) -> np.ndarray:
    """The image resampled into the reference's (part) coordinates, `part_to_frame` the
    2x3 affine from those to the image's pixels."""
    h, w = image.shape[:2]
    return cv2.warpAffine(
        image,
        part_to_frame,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def to_frame(part_map: np.ndarray, part_to_frame: np.ndarray) -> np.ndarray:
    """A map in part coordinates resampled into frame pixels (outside the part: 0)."""
    h, w = part_map.shape[:2]
    return cv2.warpAffine(
        part_map, part_to_frame, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )


def fit_reference(images: list[np.ndarray], roi: Rect, reg: Registration) -> str:
    """The reference of a set of good parts (already flat-fielded): each aligned to the
    first, then averaged (less noise than any one part). A good part that does not align
    is an error that names it: fitting on it would teach the model a misplaced part."""
    if not images:
        raise ValueError("a registration reference needs at least one good image")
    first = grey_roi(images[0], roi, reg.size)
    total = first.astype(np.float64)
    for n, img in enumerate(images[1:], 2):
        moving = grey_roi(img, roi, reg.size)
        try:
            cc, warp = ecc(first, moving, reg.motion)
        except cv2.error:
            cc, warp = 0.0, None
        if warp is None or cc < reg.min_correlation:
            raise ValueError(
                f"good image {n} of {len(images)} does not align to the first "
                f"(correlation {cc:.2f}, minimum {reg.min_correlation:.2f}): "
                "is it the same part, placed the same way?"
            )
        total += to_part(moving, warp)
    return encode_reference((total / len(images)).astype(np.float32))
