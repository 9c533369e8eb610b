"""Seeded generator of part images with injected defects and their ground truth.

Parts carry the nuisance a real line has (illumination gradient, vignetting,
gain, small shift, sensor noise) so that models and thresholds are tested on
that, not on clean renders. Every image is a pure function of (family, seed,
nuisance profile).

Two profiles: LINE is what fit data and the demo see; SHIFTED is wider than anything
LINE produces (stronger gain and gradient, varying vignetting, more rotation, shift,
blur and noise, per-channel colour drift, misregistered print), so that an accuracy
figure measured on it says how a model copes with a line that has drifted away from
the day it was fitted.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np

FAMILIES = ("brushed_metal", "woven_fabric", "printed_pattern")
DEFECT_TYPES = ("scratch", "spot", "hole", "contamination", "stain", "crack", "missing_feature")
# a missing feature needs a feature: only structured parts (printed dots) have one; on a
# random texture "flattened" texture is not a defect a person could point at either
FAMILY_DEFECTS = {
    "brushed_metal": DEFECT_TYPES[:6],
    "woven_fabric": DEFECT_TYPES[:6],
    "printed_pattern": DEFECT_TYPES,
}
PRINT_PITCH = 48  # printed_pattern: dot grid pitch in px (before shift/rotation)
BASE_TINT = (1.0, 0.98, 0.95)  # B, G, R gains of a slightly warm light
FOCUS_MIN = 0.3  # below this defocus sigma the image is left sharp
PAD = 32  # the texture is rendered this much larger on each side, room for the shift


@dataclass(frozen=True)
class Nuisance:
    """What varies from part to part; (lo, hi) pairs are drawn uniformly per image.

    A pair with lo == hi is a constant and draws nothing from the generator, so a
    profile that fixes a value renders the same bytes as code that never drew it.
    """

    name: str
    gain: tuple[float, float]  # global brightness factor
    gradient: tuple[float, float]  # amplitude of the linear illumination gradient
    vignette: tuple[float, float]  # relative darkening at half the longer edge from centre
    rotation_deg: float  # +- placement rotation
    shift_px: int  # +- placement shift (at most PAD)
    focus_sigma: tuple[float, float]  # defocus blur sigma (none below FOCUS_MIN)
    noise_sigma: tuple[float, float]  # additive sensor noise, grey levels
    colour_drift: tuple[float, float]  # per-channel gain on top of BASE_TINT
    print_offset_px: int  # printed_pattern: +- offset of the dot layer
    print_darkness: tuple[float, float]  # printed_pattern: factor on the dots' darkness


LINE = Nuisance(
    name="line",
    gain=(0.92, 1.08),
    gradient=(0.0, 0.15),
    vignette=(0.12, 0.12),
    rotation_deg=2.0,
    shift_px=8,
    focus_sigma=(0.0, 0.8),
    noise_sigma=(2.0, 2.0),
    colour_drift=(1.0, 1.0),
    print_offset_px=0,
    print_darkness=(1.0, 1.0),
)
SHIFTED = Nuisance(
    name="shifted",
    gain=(0.85, 1.15),
    gradient=(0.0, 0.30),  # up to +-15 % around the mean across the image
    vignette=(0.08, 0.25),
    rotation_deg=3.0,
    shift_px=12,
    focus_sigma=(0.0, 1.5),
    noise_sigma=(2.0, 4.0),
    colour_drift=(0.92, 1.08),
    print_offset_px=3,
    print_darkness=(0.9, 1.1),
)
NUISANCES = {n.name: n for n in (LINE, SHIFTED)}


def nuisance_profile(name: str | Nuisance) -> Nuisance:
    """The profile called `name` ("line" or "shifted"); a Nuisance is returned as is."""
    if isinstance(name, Nuisance):
        return name
    if name not in NUISANCES:
        raise ValueError(f"unknown nuisance profile {name!r}; known: {', '.join(NUISANCES)}")
    return NUISANCES[name]


def _draw(rng: np.random.Generator, span: tuple[float, float]) -> float:
    lo, hi = span
    return float(lo) if lo == hi else float(rng.uniform(lo, hi))


@dataclass(frozen=True)
class GroundTruth:
    family: str
    seed: int
    defect_type: str | None  # None = good part
    severity: str  # "obvious" | "subtle" | "none"
    mask: np.ndarray = field(repr=False, compare=False)  # uint8 0/255, HxW
    box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1

    @property
    def defective(self) -> bool:
        return self.defect_type is not None


def _texture(
    family: str, rng: np.random.Generator, h: int, w: int, nz: Nuisance = LINE
) -> np.ndarray:
    hp, wp = h + 2 * PAD, w + 2 * PAD
    noise = rng.normal(0.0, 1.0, (hp, wp)).astype(np.float32)
    if family == "brushed_metal":
        tex = cv2.GaussianBlur(noise, (0, 0), sigmaX=12.0, sigmaY=0.8) * 40.0 + 135.0
    elif family == "woven_fabric":
        yy, xx = np.mgrid[0:hp, 0:wp].astype(np.float32)
        period = 10.0
        weave = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period)
        tex = 120.0 + 25.0 * weave + cv2.GaussianBlur(noise, (0, 0), 1.0) * 8.0
    elif family == "printed_pattern":
        tex = _print(rng, hp, wp, nz) + cv2.GaussianBlur(noise, (0, 0), 1.0) * 5.0
    else:
        raise ValueError(f"unknown part family {family!r}; known: {', '.join(FAMILIES)}")
    # placement: a small rotation and shift of the oversized texture
    angle = float(rng.uniform(-nz.rotation_deg, nz.rotation_deg))
    rot = cv2.getRotationMatrix2D((wp / 2, hp / 2), angle, 1.0)
    tex = cv2.warpAffine(tex, rot, (wp, hp), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    s = nz.shift_px
    dx, dy = rng.integers(0, 2 * s + 1, 2)
    return tex[PAD + dy - s : PAD + dy - s + h, PAD + dx - s : PAD + dx - s + w]


def _print(rng: np.random.Generator, h: int, w: int, nz: Nuisance) -> np.ndarray:
    """The printed dot layer: misregistered against the part and with an ink darkness
    that varies as far as the profile allows."""
    ox = oy = 0
    if nz.print_offset_px:
        lim = nz.print_offset_px
        ox, oy = (int(v) for v in rng.integers(-lim, lim + 1, 2))
    ink = 90.0 * _draw(rng, nz.print_darkness)
    tex = np.full((h, w), 170.0, np.float32)
    for cy in range(16 + oy, h, PRINT_PITCH):
        for cx in range(16 + ox, w, PRINT_PITCH):
            cv2.circle(tex, (cx, cy), 9, 170.0 - ink, -1, lineType=cv2.LINE_AA)
    return tex


def _nuisance(img: np.ndarray, rng: np.random.Generator, nz: Nuisance = LINE) -> np.ndarray:
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 1.0 + _draw(rng, nz.gradient) * (
        (np.cos(angle) * xx / w) + (np.sin(angle) * yy / h) - 0.5
    )
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (0.5 * max(h, w)) ** 2
    vignette = 1.0 - _draw(rng, nz.vignette) * r2
    gain = _draw(rng, nz.gain)
    out = img * gradient * vignette * gain
    focus = _draw(rng, nz.focus_sigma)  # slight, varying defocus
    if focus > FOCUS_MIN:
        out = cv2.GaussianBlur(out, (0, 0), focus)
    noise = _draw(rng, nz.noise_sigma)
    return out + rng.normal(0.0, noise, img.shape).astype(np.float32)


def _defect(kind: str, severity: str, rng: np.random.Generator, h: int, w: int):
    """Returns (intensity delta image, mask)."""
    strong = severity == "obvious"
    mask = np.zeros((h, w), np.uint8)
    delta = np.zeros((h, w), np.float32)
    margin = 40
    cx, cy = int(rng.integers(margin, w - margin)), int(rng.integers(margin, h - margin))
    sign = -1.0 if rng.random() < 0.5 else 1.0
    if kind in ("scratch", "crack"):
        length = rng.uniform(60, 160)
        ang = rng.uniform(0, np.pi)
        p0 = (int(cx - np.cos(ang) * length / 2), int(cy - np.sin(ang) * length / 2))
        p1 = (int(cx + np.cos(ang) * length / 2), int(cy + np.sin(ang) * length / 2))
        width = int(rng.integers(2, 5)) if strong else 2
        if kind == "crack":
            pts = np.linspace(p0, p1, 8).astype(np.int32)
            pts += rng.integers(-6, 7, pts.shape).astype(np.int32)
            cv2.polylines(mask, [pts], False, 255, width)
            sign = -1.0
        else:
            cv2.line(mask, p0, p1, 255, width)
        amp = 70.0 if strong else 22.0
    elif kind in ("spot", "hole", "contamination"):
        radius = int(rng.integers(6, 16)) if strong else int(rng.integers(3, 6))
        if kind == "contamination":
            pts = (rng.normal(0, radius * 0.6, (7, 2)) + (cx, cy)).astype(np.int32)
            cv2.fillPoly(mask, [cv2.convexHull(pts)], 255)
            sign = 1.0
        else:
            cv2.circle(mask, (cx, cy), radius, 255, -1)
        if kind == "hole":
            sign = -1.0
        amp = {"spot": 60.0, "hole": 110.0, "contamination": 80.0}[kind] * (1.0 if strong else 0.45)
    elif kind == "missing_feature":
        # a feature of the part is absent: the local structure is replaced by its mean
        radius = int(rng.integers(12, 20)) if strong else int(rng.integers(8, 12))
        cv2.circle(mask, (cx, cy), radius, 255, -1)
        return None, mask
    elif kind == "stain":
        axes = (int(rng.integers(18, 40)), int(rng.integers(12, 30)))
        cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        amp = 40.0 if strong else 14.0
    else:
        raise ValueError(f"unknown defect type {kind!r}; known: {', '.join(DEFECT_TYPES)}")
    soft = cv2.GaussianBlur(
        mask.astype(np.float32) / 255.0, (0, 0), 3.0 if kind == "stain" else 0.7
    )
    delta = sign * amp * soft
    return delta, mask


def _nearest_dot(img: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Mask (dilated by 3 px) of the printed dot closest to the centre of `near`."""
    ys, xs = np.nonzero(near)
    cy, cx = ys.mean(), xs.mean()
    n, labels, stats, cents = cv2.connectedComponentsWithStats((img < 125).astype(np.uint8))
    dots = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] > 100]
    best = min(dots, key=lambda i: (cents[i, 0] - cx) ** 2 + (cents[i, 1] - cy) ** 2)
    mask = (labels == best).astype(np.uint8) * 255
    return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))


def render_part(
    family: str,
    seed: int,
    size: tuple[int, int] = (512, 512),
    defect_type: str | None = None,
    severity: str = "obvious",
    nuisance: str | Nuisance = "line",
) -> tuple[np.ndarray, GroundTruth]:
    """One BGR uint8 part image and its ground truth; same arguments, same pixels.

    `nuisance` is the profile the part is seen under: "line" (what fit data carry) or
    "shifted" (wider, for honest accuracy figures); see LINE and SHIFTED.
    """
    nz = nuisance_profile(nuisance)
    w, h = size
    rng = np.random.default_rng([zlib.crc32(family.encode()), seed])
    img = _texture(family, rng, h, w, nz)
    mask = np.zeros((h, w), np.uint8)
    box = None
    if defect_type is not None:
        delta, mask = _defect(defect_type, severity, rng, h, w)
        if delta is None:  # missing feature: flatten the structure under the mask
            flat = cv2.GaussianBlur(img, (0, 0), 25.0)
            if family == "printed_pattern":  # a printed dot is absent
                mask = _nearest_dot(img, mask)
                flat = np.full_like(img, float(np.percentile(img, 90)))
            soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.5)
            img = img * (1.0 - soft) + flat * soft
        else:
            img = img + delta
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    img = _nuisance(img, rng, nz)
    gray = np.clip(img, 0, 255).astype(np.uint8)
    # the light's colour, drifting per channel where the profile allows
    tint = np.array([t * _draw(rng, nz.colour_drift) for t in BASE_TINT], np.float32)
    bgr = np.clip(gray[:, :, None].astype(np.float32) * tint, 0, 255).astype(np.uint8)
    truth = GroundTruth(family, seed, defect_type, severity if defect_type else "none", mask, box)
    return bgr, truth
