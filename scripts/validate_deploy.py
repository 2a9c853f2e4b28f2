"""The checks of scripts/validate-deploy. Run it through that script (it sets up the tools)."""

import json
import os
import re
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import helm_python as helm
import yaml

TOOLS = Path(sys.argv[1])
ROOT = Path.cwd()
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
CHART = ROOT / "helm" / "webhook-dispatcher"
BINARY = ROOT / "target" / "debug" / "webhook-dispatcher"
# Kinds of operators' CRDs: kubernetes-validate has no schema for them, so they get the
# structural checks below instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}
# The values an install must give: the brokers and the admin token.
REQUIRED = {"config": {"kafkaBrokers": "kafka-0.kafka:9092"}, "secrets": {"adminToken": "change-me"}}
EVERY_TOGGLE = {
    "config": {"kafkaBrokers": "kafka-0.kafka:9092", "allowedNetworks": "10.20.0.0/16", "httpsOnly": True},
    "secrets": {"existingSecret": "webhook-dispatcher-credentials"},
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": True},
    },
    "autoscaling": {"enabled": True, "maxReplicas": 24},
    "podDisruptionBudget": {"enabled": True},
    "serviceAccount": {"create": True, "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/wd"}},
    "extraEnv": {"WD_MAX_PROFILES": "5000"},
    "imagePullSecrets": [{"name": "registry"}],
    "podAnnotations": {"example.com/team": "campaigns"},
}

results = []


def check(name):
    def run(fn):
        try:
            fn()
            results.append((name, None))
            print(f"test deploy::{name} ... ok", flush=True)
        except Exception as err:  # noqa: BLE001 - every failure is reported, then counted
            results.append((name, err))
            print(f"test deploy::{name} ... FAILED\n{''.join(traceback.format_exception(err)).rstrip()}", flush=True)
        return fn

    return run


def sh(*args, **kwargs):
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


def kubernetes_validate(files):
    """kubernetes-validate --strict; a missing schema is accepted for the CRD kinds only."""
    out = sh(TOOLS / "kubernetes-validate", "--strict", *map(str, files))
    for line in out.splitlines():
        if line.startswith(("ERROR", "CRITICAL")) or "failed" in line.lower():
            raise AssertionError(line)
        if line.startswith("WARN"):
            kind = re.search(r"kind (\w+)", line)
            if not kind or kind.group(1) not in CRD_KINDS | {"Kustomization"}:
                raise AssertionError(line)


def canonical_rules():
    return yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())


def check_crds(docs, where):
    """Structural checks of the CRD objects kubernetes-validate cannot check."""
    rules = canonical_rules()
    for doc in docs:
        kind, spec = doc["kind"], doc.get("spec", {})
        if kind == "PrometheusRule":
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", where
            assert spec == rules, f"{where}: the PrometheusRule differs from deploy/prometheus/alerts.yaml"
        elif kind == "ServiceMonitor":
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", where
            assert spec["jobLabel"] == "app.kubernetes.io/name", f"{where}: the alerts select job=webhook-dispatcher"
            endpoint = spec["endpoints"][0]
            assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics", where
            assert spec["selector"]["matchLabels"], where
        elif kind == "ScaledObject":
            assert doc["apiVersion"] == "keda.sh/v1alpha1", where
            trigger = spec["triggers"][0]
            assert trigger["type"] == "kafka", where
            assert trigger["metadata"]["allowIdleConsumers"] == "false", f"{where}: never more replicas than partitions"
            assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"], where
            for key in ("bootstrapServers", "consumerGroup", "topic", "lagThreshold"):
                assert trigger["metadata"][key], f"{where}: {key}"


def check_workload(docs, where):
    """What the operator section of the README promises about the Deployment."""
    by_kind = {d["kind"]: d for d in docs}
    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", where
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", where
    assert container["resources"]["requests"] and container["resources"]["limits"], where
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"], where
    assert pod["securityContext"]["runAsNonRoot"], where
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname", where
    config = by_kind["ConfigMap"]["data"]
    drain = int(config["WD_DRAIN_TIMEOUT"].rstrip("s"))
    assert pod["terminationGracePeriodSeconds"] > drain, f"{where}: grace period must exceed the drain timeout"
    ports = {p["name"] for p in by_kind["Service"]["spec"]["ports"]}
    assert ports == {"http", "metrics"}, where
    assert "PodDisruptionBudget" in by_kind, where


def check_config_starts(config_data, secret_data, where):
    """The binary accepts the configuration these objects give it (`config` exits 0)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WD_")}
    env.update({k: str(v) for k, v in {**config_data, **secret_data}.items()})
    sh(BINARY, "config", env=env)


@check("yamllint")
def _():
    sh(TOOLS / "yamllint", "--strict", "-c", ".yamllint", "deploy", "helm", ".yamllint")


@check("kubernetes_manifests_are_valid")
def _():
    files = sorted(KUBE.glob("*.yaml"))
    assert {f.name for f in files} >= {
        "deployment.yaml", "service.yaml", "configmap.yaml", "secret.example.yaml", "pdb.yaml",
        "servicemonitor.yaml", "prometheusrule.yaml", "scaledobject.yaml",
    }
    kubernetes_validate(files)
    docs = [d for f in files for d in documents(f.read_text()) if d.get("kind") != "Kustomization"]
    check_crds(docs, "deploy/kubernetes")
    check_workload(docs, "deploy/kubernetes")
    listed = set(yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"])
    assert listed == {f.name for f in files} - {"kustomization.yaml", "secret.example.yaml"}, listed


@check("kubernetes_config_is_accepted_by_the_binary")
def _():
    config = documents((KUBE / "configmap.yaml").read_text())[0]["data"]
    secret = documents((KUBE / "secret.example.yaml").read_text())[0]["stringData"]
    check_config_starts(config, secret, "deploy/kubernetes")


@check("promtool_check_rules")
def _():
    sh("promtool", "check", "rules", DEPLOY / "prometheus" / "alerts.yaml")


@check("promtool_test_rules")
def _():
    out = sh("promtool", "test", "rules", "alerts.test.yaml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in out, out


@check("every_alert_has_severity_summary_runbook_and_a_unit_test")
def _():
    tests = (DEPLOY / "prometheus" / "alerts.test.yaml").read_text()
    for group in canonical_rules()["groups"]:
        for rule in group["rules"]:
            name = rule["alert"]
            assert rule["labels"]["severity"] in ("critical", "warning"), name
            for key in ("summary", "description", "runbook"):
                assert rule["annotations"].get(key), f"{name}: {key}"
            assert f"alertname: {name}\n        exp_alerts:\n          - exp_labels" in tests, f"{name}: no firing test"


@check("grafana_dashboard_is_complete")
def _():
    dashboard = json.loads((DEPLOY / "grafana" / "webhook-dispatcher.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("webhook_requests_total", "webhook_request_duration_seconds_bucket", "webhook_inflight_requests",
                   "webhook_retries_scheduled_total", "webhook_dead_letters_total", "webhook_consumer_lag",
                   "webhook_oauth_token_requests_total", "webhook_template_cache_requests_total"):
        assert metric in exprs, f"no panel uses {metric}"
    for panel in dashboard["panels"]:
        assert panel["targets"] and panel["description"], panel["title"]


@check("chart_copies_match_deploy")
def _():
    assert yaml.safe_load((CHART / "files" / "alerts.yaml").read_text()) == canonical_rules(), \
        "helm/webhook-dispatcher/files/alerts.yaml differs from deploy/prometheus/alerts.yaml"
    assert json.loads((CHART / "files" / "dashboard.json").read_text()) == \
        json.loads((DEPLOY / "grafana" / "webhook-dispatcher.json").read_text()), \
        "helm/webhook-dispatcher/files/dashboard.json differs from deploy/grafana/webhook-dispatcher.json"


@check("helm_lint")
def _():
    for values in (REQUIRED, EVERY_TOGGLE):
        report = helm.lint(str(CHART), values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


@check("helm_schema_refuses_bad_values")
def _():
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema(REQUIRED)
    for bad in ({"config": {"kafkaBrokers": "k", "maxInflight": 0}}, {"colour": "red"},
                {"config": {"kafkaBrokers": "k", "drainTimeout": "soon"}}, {"config": {"kafkaBrokers": "k", "logFormat": "xml"}}):
        try:
            chart.validate_schema(bad)
        except helm.HelmError:
            continue
        raise AssertionError(f"values.schema.json accepted {bad}")
    try:
        chart.render({"secrets": {"adminToken": "x"}}, name="wd")
        raise AssertionError("rendered without config.kafkaBrokers")
    except helm.HelmError as err:
        assert "kafkaBrokers" in str(err), err


def render(values):
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values, name="wd", namespace="campaigns", is_install=True)
    return [d for path, text in sorted(rendered.items()) if path.endswith(".yaml") for d in documents(text)]


def check_rendering(values, expected_kinds, where):
    docs = render(values)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(expected_kinds), f"{where}: {kinds}"
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for n, doc in enumerate(docs):
            path = Path(tmp) / f"{n:02}-{doc['kind']}.yaml"
            path.write_text(yaml.safe_dump(doc))
            files.append(path)
        kubernetes_validate(files)
    check_crds(docs, where)
    workload = [d for d in docs if d["kind"] in ("Deployment", "ConfigMap", "Service", "PodDisruptionBudget")]
    check_workload([d for d in workload if not d["metadata"]["name"].endswith("-dashboard")], where)
    return docs


@check("helm_default_values_render_valid_objects")
def _():
    docs = check_rendering(REQUIRED, ["ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"], "helm defaults")
    by_kind = {d["kind"]: d for d in docs}
    check_config_starts(by_kind["ConfigMap"]["data"], by_kind["Secret"]["stringData"], "helm defaults")
    deployment = by_kind["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")


@check("helm_every_toggle_renders_valid_objects")
def _():
    docs = check_rendering(EVERY_TOGGLE, ["ConfigMap", "ConfigMap", "Deployment", "PodDisruptionBudget", "PrometheusRule",
                                          "ScaledObject", "Service", "ServiceAccount", "ServiceMonitor"], "helm toggles")
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    deployment = by_kind["Deployment"][0]
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "webhook-dispatcher-credentials"}} in env_from
    dashboard = next(c for c in by_kind["ConfigMap"] if c["metadata"]["name"].endswith("-dashboard"))
    assert json.loads(dashboard["data"]["webhook-dispatcher.json"]) == json.loads((DEPLOY / "grafana" / "webhook-dispatcher.json").read_text())
    assert by_kind["ScaledObject"][0]["spec"]["maxReplicaCount"] == 24
    config = next(c for c in by_kind["ConfigMap"] if not c["metadata"]["name"].endswith("-dashboard"))["data"]
    assert config["WD_MAX_PROFILES"] == "5000" and config["WD_HTTPS_ONLY"] == "true"
    check_config_starts(config, {"WD_ADMIN_TOKEN": "from-the-existing-secret"}, "helm toggles")


@check("dockerfile_is_multi_stage_non_root_and_ships_the_binary_only")
def _():
    # No Docker engine runs here, so the image is not built in the suite; this checks its shape.
    lines = [l.strip() for l in (ROOT / "Dockerfile").read_text().splitlines() if l.strip() and not l.startswith("#")]
    stages = [l for l in lines if l.startswith("FROM ")]
    assert len(stages) >= 2, "multi-stage"
    runtime = lines[lines.index(stages[-1]):]
    assert "distroless" in stages[-1] or "slim" in stages[-1], stages[-1]
    copies = [l for l in runtime if l.startswith("COPY")]
    assert copies == ["COPY --from=build /webhook-dispatcher /usr/local/bin/webhook-dispatcher"], copies
    user = [l for l in runtime if l.startswith("USER ")]
    assert user and user[-1].split()[1].split(":")[0] not in ("0", "root"), user
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target/" in ignored and ".git/" in ignored


failed = [name for name, err in results if err]
print(f"\ntest result: {'ok' if not failed else 'FAILED'}. {len(results) - len(failed)} passed; {len(failed)} failed; "
      "0 ignored; 0 measured; 0 filtered out (deploy/ and helm/)")
sys.exit(1 if failed else 0)
