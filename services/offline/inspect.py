"""Offline inspection: a folder of images -> results.jsonl, with no servers.

onnxruntime runs in-process; tiling, stitching, thresholds, defect records and verdicts
are the very functions the tiling and postprocess services call, so a part inspected
here gets the verdict the pipeline would give it.

results.jsonl (public format, documented in the README): one JSON object per image
    {"image": "<path relative to the input folder>",
     "score": <float, higher = more defective>,
     "verdict": "OK" | "NG" | "REVIEW",
     "defects": [{"class": str, "score": float, "box": [x0, y0, x1, y1]}],
     "anomaly_map": "<path relative to OUT of a float16 .npy at the image's size>"}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.common import decoders
from services.common.domain import Decision
from services.common.recipes import Recipe, load_recipe
from services.common.tensors import resize_tiles, tile_core
from services.offline.runner import OnnxRunner
from services.postprocess.logic import assess
from services.tiling.logic import recipe_tiles

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SKIP_FOLDERS = {"ground_truth"}  # MVTec masks are not parts to inspect
RESULTS = "results.jsonl"


@dataclass(frozen=True)
class Result:
    image: str
    decision: Decision
    anomaly_map: np.ndarray | None

    def row(self, map_rel: str | None) -> dict:
        d = self.decision
        return {
            "image": self.image,
            "score": float(d.score) if np.isfinite(d.score) else None,
            "verdict": d.verdict.name,
            "defects": [
                {"class": x.defect_class, "score": float(x.score), "box": list(x.box)}
                for x in d.defects
            ],
            "anomaly_map": map_rel,
        }


def find_model(recipe: Recipe, models_dir: Path) -> Path:
    """<models_dir>/<model name>/<version>/model.onnx: the recipe's version, else the highest."""
    return find_model_named(recipe.model.name, recipe.model.version, models_dir, recipe.id)


def find_model_named(name: str, version: str, models_dir: Path, recipe_id: str = "") -> Path:
    root = Path(models_dir) / name
    if version:
        path = root / version / "model.onnx"
    else:
        versions = sorted((int(p.name) for p in root.glob("*") if p.name.isdigit()), reverse=True)
        path = root / str(versions[0]) / "model.onnx" if versions else root / "1" / "model.onnx"
    if not path.exists():
        raise FileNotFoundError(
            f"no model {path} for recipe {recipe_id!r}; run `defectflow fit` first "
            f"or point --models at the folder that holds {name}/"
        )
    return path


class Inspector:
    def __init__(
        self,
        recipe: Recipe,
        onnx_path: Path,
        threads: int = 0,
        detector_path: Path | None = None,
    ) -> None:
        self.recipe = recipe
        self.runner = OnnxRunner(onnx_path, threads)
        if recipe.detector is not None and detector_path is None:
            raise ValueError(f"recipe {recipe.id!r} names a detector; its model path is needed")
        self.detector = OnnxRunner(detector_path, threads) if detector_path else None

    @classmethod
    def from_paths(cls, recipe_path: Path, models_dir: Path) -> Inspector:
        recipe = load_recipe(recipe_path)
        det = None
        if recipe.detector is not None:
            det = find_model_named(recipe.detector.name, recipe.detector.version, models_dir)
        return cls(recipe, find_model(recipe, models_dir), detector_path=det)

    def detections(self, rects, tiles) -> list:
        if self.detector is None or self.recipe.detector is None:
            return []
        d = self.recipe.detector
        size = d.input_size or self.recipe.tiling.model_input
        inputs = resize_tiles(tile_core(tiles, self.recipe.tiling.model_input), size)
        per_tile = decoders.detector_boxes(
            self.detector.run(inputs), d.decoder, d.score_min, len(rects)
        )
        return [
            (r, decoders.scale(b, r.width / size, r.height / size))
            for r, boxes in zip(rects, per_tile, strict=True)
            for b in boxes
        ]

    def inspect(self, image: np.ndarray, name: str = "") -> Result:
        h, w = image.shape[:2]
        if h * w > self.recipe.max_image_pixels:
            raise ValueError(
                f"{name}: {w}x{h} exceeds the recipe's max_image_pixels "
                f"{self.recipe.max_image_pixels}"
            )
        ft = recipe_tiles(image, self.recipe)
        maps, _ = self.runner(ft.tiles)
        decision, amap = assess(
            self.recipe,
            (w, h),
            list(zip(ft.rects, maps, strict=True)),
            len(ft.rects),
            tile_detections=self.detections(ft.rects, ft.tiles),
            upstream=ft.conditioned.review,
            part_to_frame=ft.conditioned.part_to_frame,
        )
        return Result(name, decision, amap)


def images_under(folder: Path) -> Iterator[Path]:
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder)
        if path.suffix.lower() in IMAGE_SUFFIXES and not SKIP_FOLDERS & set(rel.parts[:-1]):
            yield path


def inspect_folder(
    folder: Path,
    inspector: Inspector,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    save_maps: bool = True,
) -> list[Result]:
    """Inspect every image under `folder`; writes out/results.jsonl and out/maps/*.npy.

    An image that cannot be read is recorded with verdict REVIEW and an `error`, never
    skipped: the jsonl has exactly one line per image file found.
    """
    folder, out = Path(folder), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = list(images_under(folder))
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
    results = []
    with (out / RESULTS).open("w") as f:
        for n, path in enumerate(paths, 1):
            rel = path.relative_to(folder).as_posix()
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            try:
                if image is None:
                    raise ValueError("cannot decode image")
                result = inspector.inspect(image, rel)
            except ValueError as exc:  # recorded for review, never skipped
                row = {"image": rel, "score": None, "verdict": "REVIEW", "defects": []}
                f.write(json.dumps({**row, "anomaly_map": None, "error": str(exc)}) + "\n")
                continue
            map_rel = None
            if save_maps and result.anomaly_map is not None:
                map_rel = f"maps/{Path(rel).with_suffix('.npy').as_posix()}"
                (out / map_rel).parent.mkdir(parents=True, exist_ok=True)
                np.save(out / map_rel, result.anomaly_map.astype(np.float16))
            f.write(json.dumps(result.row(map_rel)) + "\n")
            results.append(result)
            if progress:
                progress(n, len(paths))
    return results
