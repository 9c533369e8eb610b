"""The Prometheus launcher: start, ready, scrape file-discovered targets, load the rules, stop."""

from __future__ import annotations

import shutil

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from services.localstack.process import free_port
from services.localstack.prometheus import PrometheusError, start_prometheus

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (apt-get install --no-install-recommends prometheus)")
    p = start_prometheus(tmp_path_factory.mktemp("prom"))
    yield p
    p.stop()


def test_scrapes_targets_added_after_start_and_loads_the_rules(prom):
    registry = CollectorRegistry()
    g = Gauge("defectflow_score_drift_ks", "test", ["line", "recipe"], registry=registry)
    w = Gauge("defectflow_score_drift_window_scores", "test", ["line", "recipe"], registry=registry)
    g.labels("line-1", "r").set(0.9)
    w.labels("line-1", "r").set(50)
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=registry)
    prom.set_targets([("postprocess", f"127.0.0.1:{port}")])

    result = prom.wait_for(
        lambda: prom.query('defectflow_score_drift_ks{job="postprocess"}'), 20, "scraped sample"
    )
    assert float(result[0]["value"][1]) == pytest.approx(0.9)
    assert result[0]["metric"]["line"] == "line-1"
    # scrape_interval 1s: a change shows within a few seconds
    g.labels("line-1", "r").set(0.1)
    prom.wait_for(
        lambda: float(prom.query("defectflow_score_drift_ks")[0]["value"][1]) < 0.5, 10, "update"
    )
    groups = prom.api("rules")["groups"]
    names = {r["name"] for grp in groups for r in grp["rules"]}
    assert "DefectflowScoreDrift" in names and len(names) == 6
    with pytest.raises(PrometheusError, match="parse error"):
        prom.query("sum by (line (defectflow_score_drift_ks)")


def test_stop_ends_the_process_and_the_log_is_kept(prom, tmp_path):
    p = start_prometheus(tmp_path)
    assert p.process.alive()
    p.stop()
    assert not p.process.alive()
    log = (tmp_path / "logs" / "prometheus.log").read_text()
    assert "Server is ready to receive web requests" in log


def test_every_dashboard_and_rule_query_parses(prom):
    """Validity without a pipeline (the e2e test checks that they return series)."""
    import json

    import yaml

    from services.localstack.prometheus import DASHBOARD, RULES

    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    exprs += [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(exprs) > 30
    for expr in exprs:
        prom.query(expr.replace("$__rate_interval", "1m").replace("$line", ".*"))
