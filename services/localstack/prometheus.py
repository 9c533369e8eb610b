"""Debian's Prometheus (2.42, `apt-get install --no-install-recommends prometheus`), run by us.

Scrapes every service's /metrics and Triton's metrics port each second and evaluates the
alert rules in monitoring/rules/. Targets come from a file (`file_sd_configs`) that the
local stack rewrites whenever it starts a service: Prometheus watches the file and picks
up new targets at once, so it can start before or after the services.

Timing checked here: /-/ready answers ~0.1 s after start, the first scrape lands ~5 s
later; poll queries for up to ~15 s (see `Prometheus.wait_for`).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from services.localstack.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "rules" / "defectflow.rules.yml"


def prometheus_binary(name: str = "prometheus") -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(
            f"{name} not found on PATH: on Debian `apt-get install -y "
            "--no-install-recommends prometheus` (or run `make setup`)"
        )
    return path


def config(targets_file: Path, rule_files: list[Path], interval_s: float = 1.0) -> dict:
    """prometheus.yml: file-discovered targets (each with its job label), the rules."""
    every = f"{interval_s:g}s"
    return {
        "global": {"scrape_interval": every, "evaluation_interval": every},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "defectflow",
                "scrape_timeout": every,
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
            }
        ],
    }


def write_targets(path: Path, targets: Iterable[tuple[str, str]]) -> None:
    """targets: (job, host:port) pairs; replicas of a service share its job. Written
    atomically (Prometheus watches this file)."""
    groups = [{"targets": [addr], "labels": {"job": job}} for job, addr in sorted(targets)]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups, indent=1))
    tmp.replace(path)


@dataclass
class Prometheus:
    port: int
    workdir: Path
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets_file(self) -> Path:
        return self.workdir / "targets.json"

    def set_targets(self, targets: Iterable[tuple[str, str]]) -> None:
        write_targets(self.targets_file, targets)

    def api(self, path: str, **params: str) -> dict:
        """GET /api/v1/<path>; raises on an HTTP error or status != success (the message
        Prometheus gives for an invalid query is in the exception)."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                doc = json.load(resp)
        except urllib.error.HTTPError as exc:
            doc = json.loads(exc.read() or b"{}")
            raise PrometheusError(f"{path} {params}: {doc.get('error', exc)}") from exc
        if doc.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {doc.get('error', doc)}")
        return doc["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """Instant query (now, or at unix time `at`): the result vector."""
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        result = data["result"]
        return result if data["resultType"] == "vector" else [{"metric": {}, "value": result}]

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]

    def wait_for(
        self, check: Callable[[], object], timeout_s: float = 15.0, what: str = "a result"
    ):
        """Poll `check` until it returns something truthy (scrapes land ~5 s after start)."""
        deadline = time.monotonic() + timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = check()
                if value:
                    return value
            except PrometheusError as exc:
                last_error = exc
            time.sleep(0.5)
        raise TimeoutError(f"Prometheus: no {what} after {timeout_s:.0f} s ({last_error or ''})")

    def stop(self) -> None:
        self.process.stop(timeout_s=10)


class PrometheusError(RuntimeError):
    """Prometheus answered with an error (e.g. a query that does not parse)."""


def start_prometheus(
    workdir: Path,
    targets: Iterable[tuple[str, str]] = (),
    rule_files: list[Path] | None = None,
    port: int | None = None,
    interval_s: float = 1.0,
    timeout_s: float = 30.0,
) -> Prometheus:
    """Start Prometheus on 127.0.0.1 with its data in workdir/prometheus, logs in
    workdir/logs/prometheus.log; returns once /-/ready answers."""
    port = port or free_port()
    home = Path(workdir) / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    write_targets(home / "targets.json", targets)
    cfg = home / "prometheus.yml"
    rules = [RULES] if rule_files is None else rule_files
    cfg.write_text(yaml.safe_dump(config(home / "targets.json", rules, interval_s)))
    proc = ManagedProcess(
        name="prometheus",
        argv=[
            prometheus_binary(),
            f"--config.file={cfg}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1d",
            "--web.enable-lifecycle",
        ],
        log_path=Path(workdir) / "logs" / "prometheus.log",
        cwd=home,
    ).start()
    prom = Prometheus(port, home, proc)

    def ready() -> bool:
        with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=1) as resp:
            return resp.status == 200

    proc.wait_ready(ready, timeout_s)
    return prom


# --- the same rules and dashboard for Kubernetes (Prometheus Operator, Grafana sidecar) -----
K8S_MONITORING = ROOT / "k8s" / "monitoring"
DASHBOARD = ROOT / "monitoring" / "dashboards" / "defectflow.json"


def k8s_assets() -> dict[Path, str]:
    """What k8s/monitoring must hold, rendered from monitoring/: a PrometheusRule with the
    rules file's groups, and the dashboard JSON (kustomize reads files only below its
    kustomization, hence the copy). tests/unit/test_metrics_rules.py fails when stale."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "defectflow", "labels": {"app.kubernetes.io/part-of": "defectflow"}},
        "spec": {"groups": groups},
    }
    header = (
        "# Generated from monitoring/rules/defectflow.rules.yml by\n"
        "#   python -m services.localstack.prometheus sync-k8s\n"
        "# Edit the rules file, not this.\n"
    )
    return {
        K8S_MONITORING / "rules" / "prometheusrule.yaml": header
        + yaml.safe_dump(rule, sort_keys=False, width=100),
        K8S_MONITORING / "dashboards" / "defectflow.json": DASHBOARD.read_text(),
    }


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["sync-k8s"]:
        raise SystemExit("usage: python -m services.localstack.prometheus sync-k8s")
    for path, text in k8s_assets().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path.relative_to(ROOT))
