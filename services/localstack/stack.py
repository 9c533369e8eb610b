"""The whole pipeline on one machine: broker, Triton, PostgreSQL and the five services.

Used by `defectflow up`, the end-to-end tests and the benchmarks alike.
"""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from models.prepare import DEFAULT_RECIPE, Prepared, fit_recipe
from services.common.kafka_admin import ensure_topics
from services.localstack.broker import Broker, start_broker
from services.localstack.postgres import Postgres, start_postgres
from services.localstack.process import ManagedProcess, free_port, port_open
from services.localstack.prometheus import Prometheus, start_prometheus
from services.localstack.triton import Triton, start_triton

SERVICES = ("ingest", "tiling", "inference", "postprocess", "store")
PIPELINE = ("tiling", "inference", "postprocess", "store")  # consumers, started before ingest


@dataclass
class LocalStack:
    workdir: Path
    partitions: int = 4
    broker: Broker | None = None
    postgres: Postgres | None = None
    triton: Triton | None = None
    prepared: Prepared | None = None
    query_port: int = 0
    prometheus: Prometheus | None = None
    metrics_ports: dict[str, int] = field(default_factory=dict)  # service label -> port
    services: dict[str, ManagedProcess] = field(default_factory=dict)
    service_args: dict[str, tuple[str, dict[str, str] | None]] = field(default_factory=dict)

    def prepare_models(self, family: str = "brushed_metal") -> Prepared:
        if self.prepared is None:
            self.prepared = fit_recipe(DEFAULT_RECIPE, family, self.workdir)
        return self.prepared

    def start_broker(self) -> Broker:
        if self.broker is None:
            self.broker = start_broker(self.workdir)
            ensure_topics(self.broker.bootstrap, self.partitions)
        return self.broker

    def start_postgres(self) -> Postgres:
        if self.postgres is None:
            self.postgres = start_postgres(self.workdir / "postgres")
        return self.postgres

    def start_triton(self) -> Triton:
        if self.triton is None:
            self.triton = start_triton(self.prepare_models().repository, self.workdir)
            self._update_targets()
        return self.triton

    def restart_triton(self) -> Triton:
        """Start tritonserver again on the same ports (after a crash or kill -9)."""
        assert self.triton is not None
        old = self.triton
        old.stop()
        self.triton = start_triton(
            self.prepare_models().repository,
            self.workdir,
            ports=(old.grpc_port, old.http_port, old.metrics_port),
        )
        return self.triton

    def restart_postgres(self) -> Postgres:
        """Start PostgreSQL again on the same port and data directory (crash recovery runs)."""
        assert self.postgres is not None
        old = self.postgres
        old.stop()
        self.postgres = start_postgres(self.workdir / "postgres", port=old.port)
        return self.postgres

    def start_prometheus(self) -> Prometheus:
        """Prometheus scraping every service started (before or after) and Triton."""
        if self.prometheus is None:
            self.prometheus = start_prometheus(self.workdir, self.scrape_targets())
        return self.prometheus

    def metrics_urls(self) -> dict[str, str]:
        """Service label -> its /metrics URL, for the services started."""
        return {
            label: f"http://127.0.0.1:{port}/metrics"
            for label, port in self.metrics_ports.items()
            if label in self.services
        }

    def scrape_targets(self) -> list[tuple[str, str]]:
        """(job, host:port): a replica's job is its service name, like a Kubernetes Service."""
        targets = [
            (self.service_args[label][0], f"127.0.0.1:{port}")
            for label, port in self.metrics_ports.items()
            if label in self.services
        ]
        if self.triton is not None:
            targets.append(("triton", f"127.0.0.1:{self.triton.metrics_port}"))
        return targets

    def _update_targets(self) -> None:
        if self.prometheus is not None:
            self.prometheus.set_targets(self.scrape_targets())

    def start_components(self) -> LocalStack:
        """Start whatever is not running yet; each step is also usable alone (test fixtures)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare_models()
        self.start_broker()
        self.start_postgres()
        self.start_triton()
        return self

    def service_env(self, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        assert self.broker, "start_broker() first"
        p = f"DEFECTFLOW_{name.upper()}_"
        env = dict(os.environ)
        env.update(
            {
                p + "KAFKA_BOOTSTRAP": self.broker.bootstrap,
                p + "BLOB_ROOT": str(self.workdir / "blobs"),
                p + "RECIPES_DIR": str(self.workdir / "recipes"),
                p + "INSTANCE": name,
            }
        )
        if name == "inference":
            assert self.triton, "start_triton() first"
            env[p + "TRITON_URL"] = self.triton.grpc_url
        if name == "store":
            assert self.postgres, "start_postgres() first"
            env[p + "DATABASE_URL"] = self.postgres.url
            env[p + "GRPC_ADDRESS"] = f"127.0.0.1:{self.query_port}"
        for k, v in (extra or {}).items():
            env[p + k.upper()] = v
        if name == "store" and not (env.get(p + "TOKENS") or env.get(p + "TOKENS_FILE")):
            env[p + "OPEN_API"] = "true"  # the local stack binds 127.0.0.1 only
        return env

    def start_service(
        self, name: str, extra: dict[str, str] | None = None, replica: int = 0
    ) -> ManagedProcess:
        if name == "store" and not self.query_port:
            self.query_port = free_port()
        label = name if replica == 0 else f"{name}-{replica}"
        old = self.services.get(label)
        if old is not None and old.alive():
            # one process per label: a second one would orphan the first (and the store's
            # would find its query port taken); callers that want more use `replica`
            old.stop(timeout_s=15)
        if name == "ingest" and "spool_dir" not in (extra or {}):
            # a spool of its own for each ingest run; restart_service passes it on, so a
            # restarted ingest resends what the killed one had not got acknowledged
            spool = self.workdir / "ingest-spool" / f"{label}-{uuid.uuid4().hex[:8]}"
            extra = {**(extra or {}), "spool_dir": str(spool)}
        # one /metrics port per label, kept across restarts (Prometheus keeps its target)
        port = self.metrics_ports.setdefault(label, free_port())
        proc = ManagedProcess(
            name=label,
            argv=[sys.executable, "-m", f"services.{name}.main"],
            log_path=self.workdir / "logs" / f"{label}.log",
            env=self.service_env(name, {"metrics_port": str(port), **(extra or {})}),
        ).start()
        self.services[label] = proc
        self.service_args[label] = (name, extra)
        self._update_targets()
        if name == "store":
            proc.wait_ready(lambda: port_open(self.query_port), 60)
        return proc

    def restart_service(self, label: str) -> ManagedProcess:
        """Start a service again with the settings it had (after it crashed or was killed)."""
        name, extra = self.service_args[label]
        self.services[label].stop(timeout_s=15)
        replica = int(label.rsplit("-", 1)[1]) if "-" in label else 0
        return self.start_service(name, extra, replica)

    def start_pipeline(self, extra: dict[str, dict[str, str]] | None = None) -> None:
        for name in PIPELINE:
            self.start_service(name, (extra or {}).get(name))

    def stop_services(self) -> None:
        for proc in reversed(list(self.services.values())):
            proc.stop(timeout_s=15)
        self.services.clear()
        self._update_targets()

    def stop(self) -> None:
        self.stop_services()
        for comp in (self.prometheus, self.triton, self.postgres, self.broker):
            if comp is not None:
                comp.stop()
