"""A child process with a log file, a readiness probe and a clean stop.

Every real component on one machine (broker, tritonserver, PostgreSQL, the
services themselves) is started through this one class, by `defectflow up`,
by the test fixtures and by the benchmarks alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class ComponentError(RuntimeError):
    """A component did not start or stopped unexpectedly."""


def free_port() -> int:
    """Ask the kernel for a free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class ManagedProcess:
    """One child process whose stdout/stderr go to `log_path`."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None  # run through `runuser -u USER --` (PostgreSQL refuses root)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = list(self.argv)
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # our Ctrl-C must not reach it before we stop it in order
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise ComponentError(
                    f"{self.name} exited with code {self.proc.returncode if self.proc else '?'} "
                    f"before it was ready; last log lines from {self.log_path}:\n{tail(self.log_path)}"
                )
            try:
                if probe():
                    return
            except Exception:  # noqa: BLE001 - any probe failure means "not yet"
                pass
            time.sleep(0.1)
        raise ComponentError(
            f"{self.name} not ready after {timeout_s:.0f} s; last log lines from "
            f"{self.log_path}:\n{tail(self.log_path)}"
        )

    def stop(self, timeout_s: float = 10.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the process group, wait, then SIGKILL whatever is left."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9 the whole process group and reap it (used by the fault tests too)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
