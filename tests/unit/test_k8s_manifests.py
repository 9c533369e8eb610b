"""The Kubernetes manifests (k8s/) render, validate, and agree with the code they deploy."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.common import topics

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("local", "gpu")
SERVICES = sorted(
    p.name
    for p in (ROOT / "services").iterdir()
    if (p / "config.py").is_file() and p.name != "common"
)
ENV_RE = re.compile(r"^DEFECTFLOW_([A-Z]+)_([A-Z0-9_]+)$")
CRD_REQUIRED = {
    "KafkaTopic": (
        ("spec", "topicName"),
        ("spec", "partitions"),
        ("spec", "replicas"),
        ("metadata", "labels", "strimzi.io/cluster"),
    ),
    "ScaledObject": (
        ("spec", "scaleTargetRef", "name"),
        ("spec", "maxReplicaCount"),
        ("spec", "triggers"),
    ),
    "ServiceMonitor": (("spec", "selector"), ("spec", "endpoints")),
    "PrometheusRule": (("spec", "groups"),),  # the rules themselves: test_monitoring_rules.py
}


def render(overlay: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip(
            "kubectl is not installed: it renders the kustomize overlays (kubectl kustomize)"
        )
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def docs(request) -> list[dict]:
    return render(request.param)


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def dig(doc: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def settings_fields(service: str) -> set[str]:
    module = importlib.import_module(f"services.{service}.config")
    classes = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and c.__module__ == module.__name__ and hasattr(c, "model_fields")
    ]
    assert len(classes) == 1, f"services/{service}/config.py should define one settings class"
    prefix = classes[0].model_config.get("env_prefix")
    assert prefix == f"DEFECTFLOW_{service.upper()}_", (
        f"{classes[0].__name__} has env_prefix {prefix!r}"
    )
    return set(classes[0].model_fields)


def env_names(docs: list[dict], container: dict) -> list[str]:
    """Env var names a container gets, with envFrom ConfigMap/Secret keys expanded by prefix."""
    names = [e["name"] for e in container.get("env", [])]
    data = {
        (d["kind"], d["metadata"]["name"]): d.get("data", {})
        for d in docs
        if d["kind"] in ("ConfigMap", "Secret")
    }
    for src in container.get("envFrom", []):
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in src:
                ref = (kind, src[key]["name"])
                assert ref in data, f"envFrom refers to missing {kind} {ref[1]}"
                names += [src.get("prefix", "") + k for k in data[ref]]
    return names


def test_deployments_are_named_like_service_folders(docs):
    names = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}
    assert set(SERVICES) <= names, f"missing Deployments for {set(SERVICES) - names}"
    for d in of_kind(docs, "Deployment"):
        name = d["metadata"]["name"]
        if name in SERVICES:
            (c,) = d["spec"]["template"]["spec"]["containers"]
            assert c.get("args") == [f"services.{name}.main"], (
                f"Deployment {name} runs {c.get('args')}"
            )
            assert c["resources"].get("requests") and c["resources"].get("limits"), name


def test_env_vars_are_real_settings_fields(docs):
    for d in of_kind(docs, "Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            for env in env_names(docs, c):
                m = ENV_RE.match(env)
                if not m:
                    continue
                service, field = m.group(1).lower(), m.group(2).lower()
                assert service == d["metadata"]["name"], (
                    f"{env} set in Deployment {d['metadata']['name']}: prefix names another service"
                )
                assert field in settings_fields(service), (
                    f"{env} in Deployment {service}: {field!r} is not a field of services/{service}/config.py"
                )


def test_store_serves_grpc_with_probes_and_mes_only_policy(docs):
    (store,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "store"]
    (c,) = store["spec"]["template"]["spec"]["containers"]
    assert c["readinessProbe"]["grpc"]["port"] == 50051
    assert c["livenessProbe"]["grpc"]["port"] == 50051
    env = {e["name"]: e for e in c["env"]}
    assert "secretKeyRef" in env["DEFECTFLOW_STORE_DATABASE_URL"]["valueFrom"]
    assert env["DEFECTFLOW_STORE_GRPC_ADDRESS"]["value"].endswith(":50051")
    (svc,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "store"]
    assert 50051 in {p["port"] for p in svc["spec"]["ports"]}
    (policy,) = of_kind(docs, "NetworkPolicy")
    grpc_rules = [
        r for r in policy["spec"]["ingress"] if {"protocol": "TCP", "port": 50051} in r["ports"]
    ]
    assert [r["from"] for r in grpc_rules] == [
        [{"namespaceSelector": {"matchLabels": {"defectflow.io/role": "mes"}}}]
    ]


def test_every_deployment_has_a_pdb(docs):
    covered = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
        for p in of_kind(docs, "PodDisruptionBudget")
    }
    assert set(SERVICES) <= covered


def test_crd_objects_have_required_fields(docs):
    for kind, paths in CRD_REQUIRED.items():
        for d in of_kind(docs, kind):
            for path in paths:
                assert dig(d, path) not in (None, [], {}), (
                    f"{kind} {d['metadata']['name']} lacks {'.'.join(path)}"
                )
    for sm in of_kind(docs, "ServiceMonitor"):
        assert "metrics" in {e["port"] for e in sm["spec"]["endpoints"]}


def test_gpu_overlay_topics_groups_and_scaling():
    docs = render("gpu")
    kafka_topics = {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic")
    }
    assert sorted(kafka_topics) == sorted(topics.ALL)
    scaled = of_kind(docs, "ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {
        "tiling",
        "inference",
        "postprocess",
    }
    for s in scaled:
        (trigger,) = s["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        topic, group = trigger["metadata"]["topic"], trigger["metadata"]["consumerGroup"]
        assert topics.GROUPS.get(topic) == group, (
            f"ScaledObject {s['metadata']['name']}: group {group} for {topic}"
        )
        assert group == f"defectflow-{s['spec']['scaleTargetRef']['name']}"
        assert kafka_topics[topic] == s["spec"]["maxReplicaCount"], (
            f"{topic} has {kafka_topics[topic]} partitions but {group} may scale to {s['spec']['maxReplicaCount']}"
        )
    (store,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "store"]
    assert kafka_topics[topics.INSPECTIONS] >= store["spec"]["replicas"]
    (triton,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "triton"]
    spec = triton["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert spec["nodeSelector"] and spec["tolerations"]
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "triton"


def test_builtin_kinds_validate_against_schemas(docs):
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    version = kv.latest_version()
    for d in docs:
        if d["kind"] in CRD_REQUIRED or d["kind"] == "KafkaTopic":
            continue  # custom resources: checked above
        kv.validate(d, version, strict=True)
