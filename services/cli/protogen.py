"""`make protos`: regenerate the Python code beside protos/defectflow/v1/*.proto."""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"


def generate(out: Path = PROTOS) -> list[Path]:
    sources = sorted((PROTOS / "defectflow" / "v1").glob("*.proto"))
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
    ]
    rc = protoc.main([*args, *(str(s) for s in sources)])
    if rc != 0:
        raise RuntimeError(f"protoc failed with code {rc}")
    return sorted((out / "defectflow" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    sys.exit(0)
