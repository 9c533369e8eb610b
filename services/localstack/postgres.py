"""PostgreSQL on 127.0.0.1, started from Debian's binaries.

PostgreSQL refuses to run as root: as root, initdb and pg_ctl run as the
`postgres` system user (or `nobody`) on a data directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from services.localstack.process import ComponentError, ManagedProcess, free_port


def postgres_bindir() -> Path:
    for version in ("18", "17", "16", "15"):
        d = Path(f"/usr/lib/postgresql/{version}/bin")
        if (d / "postgres").exists():
            return d
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise FileNotFoundError(
        "no PostgreSQL server binaries found; install them with "
        "`apt-get install -y --no-install-recommends postgresql-15`"
    )


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
            return user
        except KeyError:
            continue
    raise ComponentError("running as root and neither 'postgres' nor 'nobody' exists")


@dataclass
class Postgres:
    port: int
    datadir: Path
    process: ManagedProcess
    database: str = "defectflow"

    @property
    def url(self) -> str:
        user = self.process.user or pwd.getpwuid(os.geteuid()).pw_name
        return f"postgresql+psycopg2://{user}@127.0.0.1:{self.port}/{self.database}"

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, exit at once.
        import signal

        self.process.stop(sig=signal.SIGINT)


def start_postgres(
    workdir: Path, port: int | None = None, timeout_s: float = 30.0, fast_unsafe: bool = True
) -> Postgres:
    """initdb (once) and start a server; `fast_unsafe` turns fsync off (tests only).

    Called again with the same workdir and port it restarts the same cluster (crash
    recovery replays the WAL), as the fault tests do after killing it.
    """
    bindir = postgres_bindir()
    port = port or free_port()
    user = _run_as()
    # pytest's tmp dirs are 0700 root: keep the cluster in a directory the server user can reach.
    datadir = workdir / "pgdata"
    sockdir = workdir / "pgsock"
    for d in (workdir, sockdir):
        d.mkdir(parents=True, exist_ok=True)
    if user:
        os.chmod(workdir, 0o755)
        shutil.chown(sockdir, user)
    if not (datadir / "PG_VERSION").exists():
        datadir.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(datadir, user)
        cmd = [
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-A",
            "trust",
            "-U",
            user or pwd.getpwuid(os.geteuid()).pw_name,
            "-E",
            "UTF8",
            "--no-instructions",
        ]
        if user:
            cmd = ["runuser", "-u", user, "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ComponentError(f"initdb failed in {datadir}: {res.stderr.strip()}")
    _clear_dead_postmaster(datadir, sockdir)
    opts = [
        "-c",
        f"port={port}",
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        f"unix_socket_directories={sockdir}",
    ]
    if fast_unsafe:
        # fsync off survives a kill -9 of PostgreSQL (the OS still holds the writes), only an
        # OS crash loses data. synchronous_commit stays on: off would acknowledge commits
        # whose WAL is not even written yet, and a killed server would lose them (checked by
        # the fault tests, which kill it while the store writes).
        opts += ["-c", "fsync=off", "-c", "full_page_writes=off"]
    proc = ManagedProcess(
        name="postgres",
        argv=[str(bindir / "postgres"), "-D", str(datadir), *opts],
        log_path=workdir / "logs" / "postgres.log",
        user=user,
    )
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    proc.start()
    pg = Postgres(port=port, datadir=datadir, process=proc)

    def ready() -> bool:
        r = subprocess.run(
            [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        )
        return r.returncode == 0

    proc.wait_ready(ready, timeout_s)
    _ensure_database(bindir, port, user, pg.database)
    return pg


def _clear_dead_postmaster(datadir: Path, sockdir: Path, timeout_s: float = 10.0) -> None:
    """After a kill -9 the old postmaster can linger as a zombie until its parent reaps it;
    PostgreSQL then takes its pid and socket lock files for a live server's and refuses
    to start. A zombie is dead: its lock files are removed."""
    pidfile = datadir / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return  # gone: PostgreSQL sees the stale pid file and recovers by itself
        if state in ("Z", "X"):  # dead, not yet reaped
            for lock in (pidfile, *sockdir.glob(".s.PGSQL.*.lock")):
                lock.unlink(missing_ok=True)
            return
        time.sleep(0.1)
    raise ComponentError(f"PostgreSQL (pid {pid}) still runs on {datadir}")


def _ensure_database(bindir: Path, port: int, user: str | None, name: str) -> None:
    cmd = [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port)]
    if user:
        cmd += ["-U", user]
    res = subprocess.run([*cmd, name], capture_output=True, text=True)
    if res.returncode != 0 and "already exists" not in res.stderr:
        raise ComponentError(f"createdb {name} failed: {res.stderr.strip()}")
