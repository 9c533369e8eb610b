"""The checked-in GPU model configs are what the specs render; CPU and GPU share one spec."""

from pathlib import Path

import pytest

from models.triton.build import reference_specs, render_config

REPO = Path(__file__).resolve().parents[2] / "models" / "repository"


@pytest.mark.parametrize("spec", reference_specs(), ids=lambda s: s.name)
def test_checked_in_gpu_config_matches_the_spec(spec):
    assert (REPO / spec.name / "config.pbtxt").read_text() == render_config(spec, "gpu")


@pytest.mark.parametrize("spec", reference_specs(), ids=lambda s: s.name)
def test_cpu_and_gpu_configs_differ_only_in_backend_instances_and_batch_sizes(spec):
    # the tensor contract (names, dtypes, shapes) is the same on both targets
    cpu, gpu = (render_config(spec, t).splitlines() for t in ("cpu", "gpu"))
    differ = {line for line in set(cpu) ^ set(gpu)}
    allowed = ("backend", "platform", "instance_group", "parameters", "batch_size")
    assert all(any(a in d for a in allowed) for d in differ), differ
    assert 'platform: "onnxruntime_onnx"' in gpu and "KIND_GPU" in "\n".join(gpu)
