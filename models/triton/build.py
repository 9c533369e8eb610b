"""Build a Triton model repository for a target ("cpu" or "gpu") from one spec per model.

The tensor names, dtypes and shapes below are the contract between the
inference service and the models; both targets are rendered from the same
spec so they never drift.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

TARGETS = ("cpu", "gpu")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton TYPE_* without the prefix: FP16, FP32, UINT8
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = (8, 16)
    # on a GPU larger batches pay: the PatchCore model alone on an H100 does ~4,400 tiles/s
    # at batch 16 and ~14,000 at batch 64 (docs/benchmarks.md); on 2 CPU cores they do not
    gpu_max_batch_size: int = 128
    gpu_preferred_batch_sizes: tuple[int, ...] = (32, 64)
    max_queue_delay_us: int = 2000
    cpu_instances: int = 2
    gpu_instances: int = 2
    extra_parameters: dict[str, str] = field(default_factory=dict)


def anomaly_spec(name: str, tile: int, input_size: int = 0) -> ModelSpec:
    """A tile's window of `input_size` px (tile + 2 x context; default: the tile) in, the
    tile's map out."""
    size = input_size or tile
    return ModelSpec(
        name=name,
        inputs=(TensorSpec("tiles", "FP16", (3, size, size)),),
        outputs=(
            TensorSpec("anomaly_map", "FP16", (1, tile, tile)),
            TensorSpec("score", "FP32", (1,)),
        ),
    )


def defects_spec(name: str, tile: int, n_classes: int, stride: int = 8) -> ModelSpec:
    """DefectNet: segmentation, detection (YOLO layout) and classification heads."""
    cells = tile // stride
    return ModelSpec(
        name=name,
        inputs=(TensorSpec("tiles", "FP16", (3, tile, tile)),),
        outputs=(
            TensorSpec("seg_logits", "FP32", (n_classes + 1, cells, cells)),
            TensorSpec("detections", "FP32", (4 + n_classes, cells * cells)),
            TensorSpec("cls_logits", "FP32", (n_classes + 1,)),
        ),
    )


def reference_specs() -> list[ModelSpec]:
    """The reference models as shipped (templates in models/recipes, DefectNet's 7 classes):
    their GPU configs are checked in under models/repository/ as the readable contract."""
    from services.common.recipes import load_recipe

    template = Path(__file__).resolve().parents[1] / "recipes" / "brushed-metal.yaml"
    recipe = load_recipe(template)
    t = recipe.tiling
    anomaly = anomaly_spec(recipe.model.name, t.model_input, t.input_size)
    return [anomaly, defects_spec("defects", 128, 7)]


def render_config(spec: ModelSpec, target: str) -> str:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {TARGETS}")

    def tensors(kind: str, items: tuple[TensorSpec, ...]) -> str:
        body = ",\n".join(
            f'  {{ name: "{t.name}" data_type: TYPE_{t.dtype} dims: [ {", ".join(map(str, t.dims))} ] }}'
            for t in items
        )
        return f"{kind} [\n{body}\n]"

    lines = [f'name: "{spec.name}"']
    if target == "cpu":
        lines.append('backend: "python"')
        instances = f"instance_group [ {{ count: {spec.cpu_instances} kind: KIND_CPU }} ]"
        params = {"intra_op_threads": "1", **spec.extra_parameters}
    else:
        lines.append('platform: "onnxruntime_onnx"')
        instances = f"instance_group [ {{ count: {spec.gpu_instances} kind: KIND_GPU }} ]"
        params = dict(spec.extra_parameters)
    gpu = target == "gpu"
    max_batch = spec.gpu_max_batch_size if gpu else spec.max_batch_size
    preferred = spec.gpu_preferred_batch_sizes if gpu else spec.preferred_batch_sizes
    lines += [
        f"max_batch_size: {max_batch}",
        tensors("input", spec.inputs),
        tensors("output", spec.outputs),
        instances,
        "dynamic_batching {",
        f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
        f"  max_queue_delay_microseconds: {spec.max_queue_delay_us}",
        "}",
    ]
    for key, value in params.items():
        lines.append(f'parameters: {{ key: "{key}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


def build_repository(models: list[tuple[ModelSpec, Path, int]], target: str, out: Path) -> Path:
    """models: (spec, onnx file, version). Writes out/<name>/config.pbtxt and out/<name>/<v>/."""
    out.mkdir(parents=True, exist_ok=True)
    for spec, onnx_path, version in models:
        model_dir = out / spec.name
        vdir = model_dir / str(version)
        vdir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(onnx_path, vdir / "model.onnx")
        if target == "cpu":
            shutil.copy2(Path(__file__).with_name("python_onnx.py"), vdir / "model.py")
        (model_dir / "config.pbtxt").write_text(render_config(spec, target))
    return out
