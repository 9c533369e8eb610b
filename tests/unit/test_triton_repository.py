"""The checked-in GPU model configs are what the specs render; CPU and GPU share one spec."""

from pathlib import Path

import pytest

from models.triton.build import reference_specs, render_config

REPO = Path(__file__).resolve().parents[2] / "models" / "repository"


@pytest.mark.parametrize("spec", reference_specs(), ids=lambda s: s.name)
def test_checked_in_gpu_config_matches_the_spec(spec):
    assert (REPO / spec.name / "config.pbtxt").read_text() == render_config(spec, "gpu")


@pytest.mark.parametrize("spec", reference_specs(), ids=lambda s: s.name)
def test_cpu_and_gpu_configs_differ_only_in_backend_and_instances(spec):
    cpu, gpu = (render_config(spec, t).splitlines() for t in ("cpu", "gpu"))
    differ = {line for line in set(cpu) ^ set(gpu)}
    assert all(
        ("backend" in d or "platform" in d or "instance_group" in d or "parameters" in d)
        for d in differ
    ), differ
    assert 'platform: "onnxruntime_onnx"' in gpu and "KIND_GPU" in "\n".join(gpu)
