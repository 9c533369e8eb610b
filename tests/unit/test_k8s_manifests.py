"""The Kubernetes manifests (k8s/) render, validate, and agree with the code they deploy."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import typing
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
# settings a service writes to: must be set (defaults are relative to the read-only WORKDIR)
WRITTEN_PATHS = (("ingest", "spool_dir"),)
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


def deployment(docs: list[dict], name: str) -> dict:
    (d,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == name]
    return d


def container(docs: list[dict], name: str) -> dict:
    (c,) = deployment(docs, name)["spec"]["template"]["spec"]["containers"]
    return c


def env_values(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


def config_data(docs: list[dict], name: str) -> dict[str, str]:
    (cm,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == name]
    return cm["data"]


def settings_class(service: str):
    module = importlib.import_module(f"services.{service}.config")
    (cls,) = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and c.__module__ == module.__name__ and hasattr(c, "model_fields")
    ]
    return cls


def is_path_field(service: str, field: str) -> bool:
    ann = settings_class(service).model_fields[field].annotation
    return ann is Path or Path in typing.get_args(ann)


def test_store_serves_grpc_with_probes_tokens_and_policy(docs):
    c = container(docs, "store")
    env = env_values(c)
    tls = "DEFECTFLOW_STORE_TLS_CERT_FILE" in env
    assert tls == ("DEFECTFLOW_STORE_TLS_KEY_FILE" in env), "TLS needs both cert and key files"
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        # the kubelet's gRPC probe is plaintext only: on a TLS port it can only check the port
        assert (probe["tcpSocket"] if tls else probe["grpc"])["port"] == 50051, probe
    assert "secretKeyRef" in env["DEFECTFLOW_STORE_DATABASE_URL"]["valueFrom"]
    assert env["DEFECTFLOW_STORE_GRPC_ADDRESS"]["value"].endswith(":50051")
    # the API never runs open in a cluster: tokens come from a mounted Secret
    assert "DEFECTFLOW_STORE_TOKENS" not in env, "tokens belong in the Secret, not in env"
    tokens = env["DEFECTFLOW_STORE_TOKENS_FILE"]["value"]
    (vol,) = [v for v in volumes_of(docs, "store") if under(tokens, v["mount"])]
    assert vol["source"].get("secret", {}).get("secretName") == "defectflow-api-tokens"
    for days in ("RECORDS_OK", "RECORDS_NG", "IMAGES_OK", "IMAGES_NG"):
        assert float(env[f"DEFECTFLOW_STORE_RETENTION_{days}_DAYS"]["value"]) > 0, days
    (svc,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "store"]
    assert 50051 in {p["port"] for p in svc["spec"]["ports"]}
    (policy,) = [
        p
        for p in of_kind(docs, "NetworkPolicy")
        if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": "store"}
    ]
    grpc_rules = [
        r for r in policy["spec"]["ingress"] if {"protocol": "TCP", "port": 50051} in r["ports"]
    ]
    assert sorted((r["from"] for r in grpc_rules), key=str) == sorted(
        [
            [{"namespaceSelector": {"matchLabels": {"defectflow.io/role": "mes"}}}],
            [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "console"}}}],
        ],
        key=str,
    ), "only MES namespaces and the console may reach the query API"


def volumes_of(docs: list[dict], name: str) -> list[dict]:
    """The container's mounts joined with their pod volumes: mount, subPath, readOnly, source."""
    spec = deployment(docs, name)["spec"]["template"]["spec"]
    sources = {v["name"]: v for v in spec.get("volumes", [])}
    (c,) = spec["containers"]
    return [
        {
            "mount": m["mountPath"],
            "subPath": m.get("subPath"),
            "readOnly": m.get("readOnly", False),
            "source": sources[m["name"]],
        }
        for m in c.get("volumeMounts", [])
    ]


def under(path: str, mount: str) -> bool:
    return (path.rstrip("/") + "/").startswith(mount.rstrip("/") + "/")


def test_file_settings_point_into_mounted_volumes(docs):
    """Every absolute path setting lies on a volume; ConfigMap/Secret files are mounted as a
    directory (a subPath mount never sees an edit, and the services re-read these files) and
    name a key that exists; paths a service writes lie on a writable volume."""
    for name in SERVICES:
        c = container(docs, name)
        for e in c.get("env", []):
            m = ENV_RE.match(e["name"])
            if not m or "value" not in e or not e["value"].startswith("/"):
                continue
            field = m.group(2).lower()
            if not is_path_field(name, field):
                continue
            on = [v for v in volumes_of(docs, name) if under(e["value"], v["mount"])]
            assert on, f"{e['name']}={e['value']} in {name}: no volume mounted there"
            vol = max(on, key=lambda v: len(v["mount"]))
            key = e["value"][len(vol["mount"]) + 1 :]
            src = vol["source"]
            for kind, ref in (("configMap", "name"), ("secret", "secretName")):
                if kind not in src or not key:  # the setting names the mounted directory
                    continue
                assert vol["subPath"] is None, f"{e['name']}: subPath mounts never update"
                if "items" in src[kind]:
                    assert key in {i["path"] for i in src[kind]["items"]}, e["name"]
                    continue
                objs = [
                    d
                    for d in docs
                    if d["kind"] == ("ConfigMap" if kind == "configMap" else "Secret")
                    and d["metadata"]["name"] == src[kind][ref]
                ]
                if kind == "configMap" or objs:  # overlays/gpu expects its Secrets from outside
                    assert objs, f"{e['name']} in {name}: no {kind} {src[kind][ref]}"
                    assert key in objs[0].get("data", {}), (
                        f"{e['name']}={e['value']} in {name}: {src[kind][ref]} has no key {key}"
                    )
    for name, field in WRITTEN_PATHS:
        c = container(docs, name)
        env = env_values(c)
        var = f"DEFECTFLOW_{name.upper()}_{field.upper()}"
        assert var in env, f"{var} unset: the default is relative to a read-only WORKDIR"
        on = [v for v in volumes_of(docs, name) if under(env[var]["value"], v["mount"])]
        assert on, f"{var}: no volume mounted there"
        vol = max(on, key=lambda v: len(v["mount"]))
        assert not vol["readOnly"], f"{var} is on a read-only mount"
        assert {"persistentVolumeClaim", "emptyDir"} & set(vol["source"]), var


def test_metrics_bind_all_interfaces_on_the_scraped_port(docs):
    stage = config_data(docs, "defectflow-stage")
    assert stage["METRICS_ADDR"] == "0.0.0.0"
    scraped = {
        s["metadata"]["name"]: {p["name"]: p for p in s["spec"]["ports"]}
        for s in of_kind(docs, "Service")
        if s["metadata"].get("labels", {}).get("defectflow.io/metrics") == "true"
    }
    for name in SERVICES:
        c = container(docs, name)
        env = env_names(docs, c)
        port_var = f"DEFECTFLOW_{name.upper()}_METRICS_PORT"
        if port_var not in env:
            continue
        # a /metrics bound to 127.0.0.1 cannot be scraped: the setting must exist and be set
        assert f"DEFECTFLOW_{name.upper()}_METRICS_ADDR" in env, (
            f"{name} binds metrics to 127.0.0.1"
        )
        port = int(env_values(c)[port_var]["value"])
        assert {"name": "metrics", "containerPort": port} in c["ports"], name
        assert scraped[name]["metrics"]["targetPort"] == "metrics", name


def test_console_serves_its_probe_path_and_reaches_the_store(docs):
    from services.console.app import create_app
    from services.console.config import ConsoleSettings

    c = container(docs, "console")
    env = {k: v.get("value") for k, v in env_values(c).items()}
    assert env["DEFECTFLOW_CONSOLE_HOST"] == "0.0.0.0"
    port = int(env["DEFECTFLOW_CONSOLE_PORT"])
    assert {"name": "http", "containerPort": port} in c["ports"]
    paths = {getattr(r, "path", None) for r in create_app(ConsoleSettings()).routes}
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        assert probe["httpGet"]["path"] in paths, f"the console serves no {probe['httpGet']}"
        assert probe["httpGet"]["port"] == "http"
    (svc,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "console"]
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http", "metrics"]
    host, _, grpc_port = env["DEFECTFLOW_CONSOLE_QUERY_TARGET"].rpartition(":")
    (store,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == host]
    grpc_ports = {p["port"] for p in store["spec"]["ports"] if p["name"] == "grpc"}
    assert int(grpc_port) in grpc_ports, f"the console calls {host}:{grpc_port}, not its gRPC port"
    store_tls = "DEFECTFLOW_STORE_TLS_CERT_FILE" in env_values(container(docs, "store"))
    assert store_tls == ("DEFECTFLOW_CONSOLE_TLS_CA_FILE" in env), (
        "the console must speak TLS exactly when the store serves it"
    )


def test_recipes_lines_and_cameras_agree(docs):
    from services.common.recipes import Recipe, load_recipe
    from services.ingest.adapters.driver import parse_cameras

    served = {p.name for p in (ROOT / "models" / "repository").iterdir() if p.is_dir()}
    recipes = {}
    for key, text in config_data(docs, "defectflow-recipes").items():
        recipe = Recipe.model_validate(yaml.safe_load(text))
        assert key == f"{recipe.id}.yaml", f"RecipeBook looks {recipe.id} up as {recipe.id}.yaml"
        template = load_recipe(ROOT / "models" / "recipes" / key)
        drop = {"thresholds", "detector"}  # calibrated values; DefectNet is optional
        assert recipe.model_dump(exclude=drop) == template.model_dump(exclude=drop), (
            f"k8s recipe {key} drifted from models/recipes/{key}"
        )
        assert recipe.model.name in served, f"{key}: Triton serves no {recipe.model.name}"
        if recipe.detector is not None:
            assert recipe.detector.name in served, f"{key}: Triton serves no {recipe.detector.name}"
        recipes[recipe.id] = recipe
    cameras = parse_cameras(config_data(docs, "defectflow-cameras")["cameras.yaml"])
    lines = {cam.line for cam in cameras.cameras.values()}
    stations = {cam.station for cam in cameras.cameras.values()}
    assert set(cameras.plc_stations) <= stations
    assigned = yaml.safe_load(config_data(docs, "defectflow-lines")["line-recipes.yaml"])
    assert set(assigned) <= lines, (
        f"line-recipes names lines no camera is on: {set(assigned) - lines}"
    )
    assert set(assigned.values()) <= set(recipes), (
        "line-recipes assigns a recipe not in the ConfigMap"
    )
    default = env_values(container(docs, "ingest"))["DEFECTFLOW_INGEST_RECIPE_ID"]["value"]
    assert default in recipes


def test_plc_is_one_consumer_of_the_inspections(docs):
    plc = deployment(docs, "plc")
    # every replica follows every PLC trigger and writes verdicts: never two at once
    assert plc["spec"]["replicas"] == 1 and plc["spec"]["strategy"]["type"] == "Recreate"
    ingest = deployment(docs, "ingest")
    assert ingest["spec"]["replicas"] == 1 and ingest["spec"]["strategy"]["type"] == "Recreate"
    plc_env = env_values(container(docs, "plc"))
    ingest_env = env_values(container(docs, "ingest"))
    assert (
        plc_env["DEFECTFLOW_PLC_CAMERAS_PATH"]["value"]
        == ingest_env["DEFECTFLOW_INGEST_CAMERAS_PATH"]["value"]
    ), "plc and ingest must read the same cameras file"


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
    # the inspections topic has two consumer groups: store and plc
    for name in ("store", "plc"):
        replicas = deployment(docs, name)["spec"]["replicas"]
        assert kafka_topics[topics.INSPECTIONS] >= replicas, name
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


def test_every_server_in_the_cluster_takes_connections_only_from_its_clients(docs):
    """Kafka, PostgreSQL and Triton, where an overlay runs them, have a NetworkPolicy that
    selects their pods and lets in only their clients on their ports."""
    expected = {
        "kafka": (9092, {"app.kubernetes.io/component": "stage"}),
        "postgres": (5432, {"app.kubernetes.io/name": "store"}),
        "triton": (8001, {"app.kubernetes.io/name": "inference"}),
    }
    served = {
        d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name")
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    }
    policies = of_kind(docs, "NetworkPolicy")
    checked = 0
    for name, (port, client) in expected.items():
        if name not in served:
            continue  # outside the cluster in this overlay (Strimzi Kafka, managed PostgreSQL)
        (policy,) = [
            p
            for p in policies
            if p["spec"]["podSelector"].get("matchLabels") == {"app.kubernetes.io/name": name}
        ]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        rules = [
            r for r in policy["spec"]["ingress"] if {"protocol": "TCP", "port": port} in r["ports"]
        ]
        assert [r["from"] for r in rules] == [[{"podSelector": {"matchLabels": client}}]], name
        checked += 1
    assert checked >= 1
