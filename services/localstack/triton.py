"""The real tritonserver bundled in nvidia-pytriton, launched directly.

Two things make the python backend work from a pip install: the stub must load
this interpreter's libpython (LD_LIBRARY_PATH starts with Python's LIBDIR, then
nvidia_pytriton.libs), and this environment's `bin` must be first on PATH so the
stub sees the same packages (numpy, onnxruntime) as we do.
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from services.localstack.process import ManagedProcess, free_port


def _pytriton_root() -> Path:
    return Path(str(importlib.resources.files("pytriton"))) / "tritonserver"


@dataclass
class Triton:
    grpc_port: int
    http_port: int
    metrics_port: int
    process: ManagedProcess

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def stop(self) -> None:
        self.process.stop(timeout_s=15)


def _backend_dir(workdir: Path) -> Path:
    """A copy of pytriton's backends/ with the Python 3.11 stub placed beside the backend."""
    root = _pytriton_root()
    target = workdir / "triton-backends"
    py = target / "python"
    if not (py / "triton_python_backend_stub").exists():
        shutil.copytree(root / "backends", target, dirs_exist_ok=True)
        ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / ver / "triton_python_backend_stub"
        if not stub.exists():
            raise FileNotFoundError(f"no Triton python backend stub for Python {ver} at {stub}")
        shutil.copy2(stub, py / "triton_python_backend_stub")
    return target


def triton_env() -> dict[str, str]:
    env = dict(os.environ)
    libs = Path(str(importlib.resources.files("pytriton"))).parent / "nvidia_pytriton.libs"
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (libdir, str(libs), env.get("LD_LIBRARY_PATH", "")) if p
    )
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    # one onnxruntime thread per model instance: instances, not threads, use the cores (DESIGN.md)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def triton_argv(
    model_repository: Path,
    workdir: Path,
    address: str = "127.0.0.1",
    ports: tuple[int, int, int] = (8001, 8000, 8002),
    log_verbose: int = 0,
) -> list[str]:
    """The tritonserver command line; ports are (grpc, http, metrics)."""
    grpc_port, http_port, metrics_port = ports
    root = _pytriton_root()
    return [
        str(root / "bin" / "tritonserver"),
        f"--model-repository={Path(model_repository).resolve()}",
        f"--backend-directory={_backend_dir(Path(workdir).resolve())}",
        f"--cache-directory={root / 'caches'}",
        f"--grpc-address={address}",
        f"--grpc-port={grpc_port}",
        f"--http-address={address}",
        f"--http-port={http_port}",
        f"--metrics-address={address}",
        f"--metrics-port={metrics_port}",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--strict-readiness=true",
        f"--log-verbose={log_verbose}",
    ]


def start_triton(
    model_repository: Path,
    workdir: Path,
    timeout_s: float = 120.0,
    log_verbose: int = 0,
    ports: tuple[int, int, int] | None = None,
) -> Triton:
    """Start tritonserver; `ports` (grpc, http, metrics) to come back where clients expect it."""
    grpc_port, http_port, metrics_port = ports or (free_port(), free_port(), free_port())
    argv = triton_argv(
        model_repository,
        workdir,
        ports=(grpc_port, http_port, metrics_port),
        log_verbose=log_verbose,
    )
    proc = ManagedProcess(
        name="tritonserver",
        argv=argv,
        log_path=workdir / "logs" / "triton.log",
        env=triton_env(),
        cwd=workdir,
    ).start()
    triton = Triton(grpc_port, http_port, metrics_port, proc)

    def ready() -> bool:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(triton.grpc_url)
        try:
            return bool(client.is_server_ready())
        finally:
            client.close()

    proc.wait_ready(ready, timeout_s)
    return triton
