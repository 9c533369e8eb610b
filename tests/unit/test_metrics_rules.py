"""Alert rules and dashboard: promtool checks, the Kubernetes copies, and metric names that
exist. The queries' results are checked against a live pipeline in tests/e2e/test_monitoring.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from services.common import drift
from services.localstack.prometheus import DASHBOARD, RULES, k8s_assets
from tests.unit.test_metrics import exported_names

RULE_TESTS = RULES.with_name("defectflow.rules.test.yml")
# metrics other exporters provide: Triton's own endpoint, the DCGM exporter, Prometheus
FOREIGN = re.compile(r"^(nv_|DCGM_|up$)")
PROMQL_FUNCS_AND_WORDS = {
    "sum",
    "max",
    "min",
    "avg",
    "rate",
    "increase",
    "deriv",
    "histogram_quantile",
    "by",
    "on",
    "and",
    "or",
    "sort_desc",
    "le",
    "line",
    "stage",
    "topic",
    "partition",
    "recipe",
    "verdict",
    "reason",
    "kind",
    "phase",
    "model",
    "camera",
    "defect_class",
    "job",
    "instance",
    "gpu",
    "Hostname",
    "printf",
    "humanizePercentage",
    "humanizeDuration",
    "value",
    "labels",
}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (apt-get install --no-install-recommends prometheus)")
    return path


def test_promtool_check_rules():
    out = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 6 rules found" in out.stdout


def test_promtool_unit_tests_of_the_rules():
    out = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_the_issue_asks_for_has_a_promtool_test():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert alerts == {
        "DefectflowStageDown",
        "DefectflowConsumerLagGrowing",
        "DefectflowDeadLetterRate",
        "DefectflowLatencyAboveTakt",
        "DefectflowNgRateSpike",
        "DefectflowScoreDrift",
    }
    tested = {
        t["alertname"]
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for t in case["alert_rule_test"]
        if t.get("exp_alerts")
    }
    assert tested == alerts, f"alerts never shown firing in a test: {alerts - tested}"


def test_drift_alert_threshold_is_the_one_the_code_documents():
    (rule,) = [
        r
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if r["alert"] == "DefectflowScoreDrift"
    ]
    assert f"defectflow_score_drift_ks) > {drift.KS_ALERT:g}" in rule["expr"]
    assert f"defectflow_score_drift_window_scores) >= {drift.ALERT_MIN_WINDOW}" in rule["expr"]


def test_kubernetes_copies_are_current():
    for path, text in k8s_assets().items():
        assert path.exists() and path.read_text() == text, (
            f"{path} is stale: run `python -m services.localstack.prometheus sync-k8s`"
        )


def _exprs() -> list[str]:
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return rules + [t["expr"] for p in panels for t in p.get("targets", [])]


def test_rules_and_dashboard_use_only_metrics_the_services_export():
    known = exported_names()
    for expr in _exprs():
        body = re.sub(r'"[^"]*"', '""', expr)  # label values are no metric names
        body = re.sub(r"\[[^\]]*\]", "", body)  # range durations
        body = re.sub(r"\b\d+(\.\d+)?(e\d+)?\b", "", body)  # numbers
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", body):
            if name in PROMQL_FUNCS_AND_WORDS or FOREIGN.match(name) or name.startswith("__"):
                continue
            assert name in known, f"{name!r} in {expr!r} is not a metric any service exports"


def test_dashboard_covers_what_operators_asked_for():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    text = " ".join(t["expr"] for p in panels for t in p.get("targets", []))
    for needed in (
        "defectflow_verdicts_total",  # throughput, yield, NG/REVIEW
        "defectflow_defects_total",  # Pareto
        "defectflow_frame_stage_seconds_bucket",  # per-stage p50/p99
        "defectflow_consumer_lag_messages",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_exec_count",  # batch size
        "DCGM_FI_DEV_GPU_UTIL",
        "defectflow_dead_letters_total",
        "defectflow_score_drift_ks",
    ):
        assert needed in text, needed
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
