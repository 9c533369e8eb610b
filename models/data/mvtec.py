"""Data sets in the MVTec AD folder layout (Bergmann et al. 2019), written and read.

    <family>/train/good/000.png
    <family>/test/good/000.png
    <family>/test/<defect type>/000.png
    <family>/ground_truth/<defect type>/000_mask.png     (0 / 255, image size)
    <family>/annotations.jsonl                            (defectflow addition, optional)

`annotations.jsonl` adds what MVTec lacks: one JSON object per image with its class,
severity, boxes [x0, y0, x1, y1] (exclusive ends, pixels) and, for generated data, the
nuisance profile it was rendered under. A user's own data in the
plain MVTec layout reads the same; boxes then come from the masks' connected components.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.common.synthetic import FAMILY_DEFECTS, NUISANCES, render_part

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
ANNOTATIONS = "annotations.jsonl"
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Sample:
    root: Path  # the family folder
    rel: str  # image path relative to root, e.g. "test/scratch/003.png"
    label: str  # "good" or the defect type
    severity: str = ""
    boxes: tuple[Box, ...] = ()
    mask_rel: str | None = None
    nuisance: str = ""  # the generator's profile; "" for a user's own images

    @property
    def path(self) -> Path:
        return self.root / self.rel

    @property
    def split(self) -> str:
        return self.rel.split("/", 1)[0]

    @property
    def defective(self) -> bool:
        return self.label != "good"

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The ground-truth mask as bool HxW (all False for good parts or a missing mask)."""
        if self.mask_rel is None:
            return np.zeros(shape, bool)
        m = cv2.imread(str(self.root / self.mask_rel), cv2.IMREAD_GRAYSCALE)
        if m is None:
            raise FileNotFoundError(f"cannot read mask {self.root / self.mask_rel}")
        return m > 127


def boxes_of(mask: np.ndarray, min_area: int = 1) -> tuple[Box, ...]:
    n, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8))
    return tuple(
        (int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, a in stats[1:] if a >= min_area
    )


@dataclass(frozen=True)
class SynthPlan:
    family: str
    size: tuple[int, int] = (512, 512)
    train_good: int = 40
    test_good: int = 40
    test_per_type: int = 10  # per defect type, half obvious, half subtle
    seed: int = 0
    types: tuple[str, ...] = ()  # default: the family's defect types
    nuisance: str = "line"  # profile of the training images (services.common.synthetic.NUISANCES)
    test_nuisance: str | None = None  # profile of the test images; default: `nuisance`

    def __post_init__(self) -> None:
        for name, value in (("nuisance", self.nuisance), ("test_nuisance", self.profile("test"))):
            if value not in NUISANCES:
                raise ValueError(
                    f"{self.family}: unknown {name} {value!r}; choose one of {', '.join(NUISANCES)}"
                )

    def profile(self, split_name: str) -> str:
        """The nuisance profile of a split ("train" or "test")."""
        if split_name == "test":
            return self.test_nuisance or self.nuisance
        return self.nuisance

    def seeds(self) -> dict[str, range]:
        # disjoint seed ranges, so no test image repeats a training image
        base = self.seed * 1_000_000
        return {
            "train": range(base, base + self.train_good),
            "test_good": range(base + 100_000, base + 100_000 + self.test_good),
            "test_defect": range(base + 200_000, base + 200_000 + self.test_per_type),
        }


def write_synthetic(
    out: Path, plan: SynthPlan, progress: Callable[[int, int], None] | None = None
) -> list[Sample]:
    """Render one family into `out/<family>` in the MVTec layout; returns the samples."""
    root = Path(out) / plan.family
    seeds = plan.seeds()
    jobs: list[tuple[str, int, str | None, str]] = []
    jobs += [("train/good", s, None, "none") for s in seeds["train"]]
    jobs += [("test/good", s, None, "none") for s in seeds["test_good"]]
    for t_index, kind in enumerate(plan.types or FAMILY_DEFECTS[plan.family]):
        for k, s in enumerate(seeds["test_defect"]):
            severity = "obvious" if k % 2 == 0 else "subtle"
            jobs.append((f"test/{kind}", s + 1000 * t_index, kind, severity))
    samples = []
    counters: dict[str, int] = {}
    for done, (folder, seed, kind, severity) in enumerate(jobs, 1):
        profile = plan.profile(folder.split("/", 1)[0])
        image, truth = render_part(plan.family, seed, plan.size, kind, severity, profile)
        n = counters.get(folder, 0)
        counters[folder] = n + 1
        rel = f"{folder}/{n:03d}.png"
        _write_png(root / rel, image)
        mask_rel = None
        if kind is not None:
            mask_rel = f"ground_truth/{kind}/{n:03d}_mask.png"
            _write_png(root / mask_rel, truth.mask)
        boxes = (truth.box,) if truth.box else ()
        samples.append(Sample(root, rel, kind or "good", severity, boxes, mask_rel, profile))
        if progress:
            progress(done, len(jobs))
    with (root / ANNOTATIONS).open("w") as f:
        for s in samples:
            row = {
                "image": s.rel,
                "label": s.label,
                "severity": s.severity,
                "boxes": [list(b) for b in s.boxes],
                "mask": s.mask_rel,
                "family": plan.family,
                "nuisance": s.nuisance,
            }
            f.write(json.dumps(row) + "\n")
    return samples


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")


def load_family(root: Path) -> list[Sample]:
    """Every image of a family folder, from annotations.jsonl or else the MVTec layout."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no data folder {root}")
    ann = root / ANNOTATIONS
    if ann.exists():
        out = []
        for n, line in enumerate(ann.read_text().splitlines(), 1):
            try:
                row = json.loads(line)
                out.append(
                    Sample(
                        root,
                        row["image"],
                        row["label"],
                        row.get("severity", ""),
                        tuple(tuple(int(v) for v in b) for b in row.get("boxes", [])),
                        row.get("mask"),
                        row.get("nuisance", ""),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{ann}:{n}: bad annotation line: {exc}") from exc
        return out
    out = []
    for split in ("train", "test"):
        for folder in sorted(p for p in (root / split).glob("*") if p.is_dir()):
            for img in _images(folder):
                rel = img.relative_to(root).as_posix()
                label = folder.name
                mask_rel = None
                boxes: tuple[Box, ...] = ()
                if label != "good":
                    m = root / "ground_truth" / label / f"{img.stem}_mask.png"
                    if m.exists():
                        mask_rel = m.relative_to(root).as_posix()
                        boxes = boxes_of(cv2.imread(str(m), cv2.IMREAD_GRAYSCALE))
                out.append(Sample(root, rel, label, "", boxes, mask_rel))
    if not out:
        raise FileNotFoundError(f"{root} has no images in train/<label>/ or test/<label>/")
    return out


def _images(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def split(samples: Sequence[Sample], name: str) -> list[Sample]:
    return [s for s in samples if s.split == name]


def read_image(sample: Sample) -> np.ndarray:
    img = cv2.imread(str(sample.path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"cannot decode image {sample.path}")
    return img
