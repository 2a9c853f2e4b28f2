"""The checks of scripts/validate-deploy. Run it through that script (it sets up the tools).

`./scripts/validate-deploy --regenerate` rewrites deploy/prometheus/alerts.yaml and
deploy/kubernetes/prometheusrule.yaml from the chart's PrometheusRule (default values) and
exits; a normal run fails while they differ.
"""

import base64
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
import urllib.error
import urllib.request
from pathlib import Path

import helm_python as helm
import yaml

TOOLS = Path(sys.argv[1])
ROOT = Path.cwd()
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
RULES = DEPLOY / "prometheus" / "alerts.yaml"
CHART = ROOT / "helm" / "webhook-dispatcher"
OPERATIONS = ROOT / "docs" / "operations.md"
BINARY = ROOT / "target" / "debug" / "webhook-dispatcher"
# Kinds of operators' CRDs: kubernetes-validate has no schema for them, so they get the
# structural checks below instead.
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject", "TriggerAuthentication"}
# The values an install must give: the brokers and the admin token.
REQUIRED = {"config": {"kafkaBrokers": "kafka-0.kafka:9092"}, "secrets": {"adminToken": "change-me-to-a-long-random-token"}}
EVERY_TOGGLE = {
    "global": {"imageRegistry": "registry.example.com"},
    "config": {
        "kafkaBrokers": "kafka-0.kafka:9092", "allowedNetworks": "10.20.0.0/16", "httpsOnly": True,
        "kafkaProperties": "security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512,ssl.ca.location=/etc/kafka-ca/ca.crt",
    },
    "secrets": {"existingSecret": "webhook-dispatcher-credentials"},
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"},
                           "relabelings": [{"targetLabel": "cluster", "replacement": "eu-1"}]},
        "prometheusRule": {
            "enabled": True, "labels": {"release": "prometheus"}, "job": "campaigns-webhooks",
            "runbookBaseUrl": "https://wiki.example.com/webhook-dispatcher/operations",
            "additionalRuleLabels": {"team": "campaigns"},
            "rules": {"WebhookRetryBacklogHigh": {"enabled": False},
                      "WebhookDeadLetterRatioHigh": {"threshold": 0.1, "for": "30m", "severity": "ticket"}},
        },
        "grafanaDashboard": {"enabled": True},
    },
    "autoscaling": {"enabled": True, "maxReplicas": 24,
                    "triggerAuthentication": {"create": True, "secretName": "keda-kafka", "secretKeys": {"ca": "ca.crt"}}},
    "podDisruptionBudget": {"enabled": True},
    "serviceAccount": {"create": True, "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/wd"}},
    "extraEnv": {"WD_MAX_PROFILES": "5000"},
    "extraEnvVars": [
        {"name": "WD_KAFKA_PROPERTIES", "valueFrom": {"secretKeyRef": {"name": "kafka-credentials", "key": "librdkafka"}}},
        {"name": "WD_MAX_PER_HOST", "value": "32"},
    ],
    "extraEnvVarsSecret": "webhook-dispatcher-extra",
    "extraVolumes": [{"name": "kafka-ca", "secret": {"secretName": "kafka-ca"}}],
    "extraVolumeMounts": [{"name": "kafka-ca", "mountPath": "/etc/kafka-ca", "readOnly": True}],
    "enableServiceLinks": True,
    "priorityClassName": "campaigns-high",
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}],
    "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
    "imagePullSecrets": [{"name": "registry"}],
    "podAnnotations": {"example.com/team": "campaigns"},
    "tests": {"image": {"repository": "registry.example.com/busybox", "tag": "1.36.1"}},
}
# What Secrets the chart does not create would hold, for the environment checks.
EXTERNAL_SECRETS = {
    "webhook-dispatcher-credentials": {"WD_ADMIN_TOKEN": "from-the-existing-secret"},
    "webhook-dispatcher-extra": {"WD_SECRET_KEY": "Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI="},
    "kafka-credentials": {"librdkafka": "security.protocol=SASL_SSL,sasl.mechanism=SCRAM-SHA-512,sasl.username=wd,sasl.password=secret"},
}
# Release names whose Service becomes service-link variables that look like the dispatcher's
# own: WD_WEBHOOK_DISPATCHER_*, WEBHOOK_DISPATCHER_* and WD_ADMIN_WEBHOOK_DISPATCHER_* in every
# pod of the namespace.
RELEASES = ("wd", "webhook-dispatcher", "wd-admin")
# Another Service of the namespace, named like the dispatcher's own variables (WD_REDIS_*).
NEIGHBOUR_SERVICES = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "wd-redis"},
                       "spec": {"ports": [{"name": "redis", "port": 6379, "protocol": "TCP"}]}}]
# Alerts that page: only what stops delivery (docs/operations.md, "Paging").
CRITICAL = {"WebhookDispatcherDown", "WebhookDispatcherAbsent", "WebhookDeliveriesFailing",
            "WebhookConsumerLagGrowing", "WebhookConsumptionStalled", "WebhookPartitionsUnowned",
            "WebhookOAuthTokenAllFailing"}
# The chart's default runbookBaseUrl: a placeholder (no repository URL is published) that
# deploy/ carries too; docs/operations.md ("Runbook links") says to set it.
RUNBOOK_BASE = yaml.safe_load((CHART / "values.yaml").read_text())["monitoring"]["prometheusRule"]["runbookBaseUrl"]
# Metrics that alerts and the dashboard may name: src/metrics/, plus what the prometheus
# crate's process collector and Prometheus itself give.
EXTRA_METRICS = {"webhook_build_info", "process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds", "up"}
METRIC = re.compile(r"\b(webhook_[a-z_]+|process_[a-z_]+|up)\b(\{[^}]*\})?")
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")

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


def kubernetes_validate_docs(docs):
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for n, doc in enumerate(docs):
            path = Path(tmp) / f"{n:02}-{doc['kind']}.yaml"
            path.write_text(yaml.safe_dump(doc))
            files.append(path)
        kubernetes_validate(files)


def render(values, name="wd", namespace="campaigns", kube_version=None):
    """The chart's objects, as `helm template` renders them (for `kube_version`, as
    `helm template --kube-version`: the SDK's render() has no such option, its native call does)."""
    chart = helm.Chart.load(str(CHART))
    if kube_version is None:
        rendered = chart.render(values, name=name, namespace=namespace, is_install=True)
    else:
        options = {"name": name, "namespace": namespace, "is_install": True, "kube_version": kube_version}
        rendered = json.loads(helm._native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options)))
    return [d for path, text in sorted(rendered.items()) if path.endswith(".yaml") for d in documents(text)]


def one(docs, kind, name_suffix=None):
    found = [d for d in docs if d["kind"] == kind and (name_suffix is None or d["metadata"]["name"].endswith(name_suffix))]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


# --- Alert rules: the chart templates them; deploy/ holds the default rendering ----------

def chart_rules(values=None):
    values = values or {**REQUIRED, "monitoring": {"prometheusRule": {"enabled": True}}}
    return one(render(values), "PrometheusRule")["spec"]


def canonical_rules():
    return yaml.safe_load(RULES.read_text())


def all_rules(spec):
    return [rule for group in spec["groups"] for rule in group["rules"]]


class RulesDumper(yaml.SafeDumper):
    pass


class Expr(str):
    """A PromQL expression: written as a literal block, the way it reads in a query editor."""


RulesDumper.add_representer(Expr, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|"))


def dump_rules(spec):
    order = ["alert", "expr", "for", "labels", "annotations"]
    notes = ["summary", "description", "runbook_url"]
    groups = [{"name": g["name"], "rules": [
        {**{k: r[k] for k in order if k in r}, "expr": Expr(r["expr"]), "annotations": {k: r["annotations"][k] for k in notes}} for r in g["rules"]]}
        for g in spec["groups"]]
    return yaml.dump({"groups": groups}, Dumper=RulesDumper, sort_keys=False, width=100, allow_unicode=True)


RULES_HEADER = """\
# Alert rules of webhook-dispatcher (a Prometheus rule file) for job="webhook-dispatcher".
#
# Generated, do not edit: the Helm chart's PrometheusRule (helm/webhook-dispatcher/templates/
# prometheusrule.yaml) rendered with default values. deploy/kubernetes/prometheusrule.yaml holds
# the same groups. Change the template or its values, then `./scripts/validate-deploy
# --regenerate` rewrites both; a normal run fails while they differ. promtool checks these rules
# and runs alerts.test.yaml. What each alert means and what to do: docs/operations.md.
# runbook_url points at a placeholder base: replace it with where your team reads
# docs/operations.md (docs/operations.md, "Runbook links").
"""
PROMETHEUSRULE_HEADER = """\
# Generated from the Helm chart's PrometheusRule with default values (the same groups as
# deploy/prometheus/alerts.yaml): `./scripts/validate-deploy --regenerate` rewrites it.
# The Helm chart templates these rules from values (job, thresholds, for, severities).
# runbook_url points at a placeholder base: replace it with where your team reads
# docs/operations.md (docs/operations.md, "Runbook links").
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: webhook-dispatcher
  labels:
    app.kubernetes.io/name: webhook-dispatcher
    app.kubernetes.io/component: dispatcher
spec:
"""


def regenerate():
    spec = chart_rules()
    RULES.write_text(RULES_HEADER + dump_rules(spec))
    body = "".join(f"  {line}\n" if line else "\n" for line in dump_rules(spec).splitlines())
    (KUBE / "prometheusrule.yaml").write_text(PROMETHEUSRULE_HEADER + body)
    print(f"wrote {RULES.relative_to(ROOT)} and {(KUBE / 'prometheusrule.yaml').relative_to(ROOT)}")


# --- What the kubelet gives the container -------------------------------------------------

def service_link_variables(service, cluster_ip):
    """pkg/kubelet/envvars FromServices for one Service: the same names, values and order."""
    prefix = service["metadata"]["name"].replace("-", "_").upper()
    ports = service["spec"]["ports"]
    env = [(f"{prefix}_SERVICE_HOST", cluster_ip), (f"{prefix}_SERVICE_PORT", str(ports[0]["port"]))]
    for port in ports:
        if port.get("name"):
            env.append((f"{prefix}_SERVICE_PORT_{port['name'].replace('-', '_').upper()}", str(port["port"])))
    for n, port in enumerate(ports):
        protocol = port.get("protocol") or "TCP"
        address = f"{protocol.lower()}://{cluster_ip}:{port['port']}"
        if n == 0:
            env.append((f"{prefix}_PORT", address))
        port_prefix = f"{prefix}_PORT_{port['port']}_{protocol.upper()}"
        env += [(port_prefix, address), (f"{port_prefix}_PROTO", protocol.lower()),
                (f"{port_prefix}_PORT", str(port["port"])), (f"{port_prefix}_ADDR", cluster_ip)]
    return env


# The API server's Service in the default namespace: every pod gets it, links or not.
KUBERNETES_SERVICE = {"metadata": {"name": "kubernetes"}, "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}


def secret_data(secret):
    data = dict(secret.get("stringData") or {})
    for key, value in (secret.get("data") or {}).items():
        data[key] = base64.b64decode(value).decode()
    return data


def kubelet_environment(docs, services=()):
    """The container's environment as the kubelet builds it (makeEnvironmentVariables):
    envFrom in order (later wins; keys that are not variable names are skipped), then env,
    then the service-link variables of every Service of the namespace when enableServiceLinks
    is on (plus the API server's, always) where no variable of that name is set yet. The
    ClusterIPs are made-up values: nothing connects to them."""
    configmaps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = dict(EXTERNAL_SECRETS)
    secrets.update({d["metadata"]["name"]: secret_data(d) for d in docs if d["kind"] == "Secret"})
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            data = configmaps[source["configMapRef"]["name"]]
        else:
            data = secrets[source["secretRef"]["name"]]
        for key, value in data.items():
            name = source.get("prefix", "") + key
            if ENV_NAME.fullmatch(name):
                env[name] = str(value)
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
    listed = [s for s in docs if s["kind"] == "Service"] + list(services)
    links = []
    if pod.get("enableServiceLinks", True):
        for n, service in enumerate(listed):
            links += service_link_variables(service, f"10.96.{n // 250}.{n % 250 + 10}")
    links += service_link_variables(KUBERNETES_SERVICE, "10.96.0.1")
    for name, value in links:
        env.setdefault(name, value)
    return env


def run_config(env):
    """`webhook-dispatcher config` with exactly this environment (as in the container)."""
    return subprocess.run([BINARY, "config"], env=env, capture_output=True, text=True, timeout=60)


def check_config_starts(env, where):
    done = run_config(env)
    assert done.returncode == 0, f"{where}: `config` exited {done.returncode}:\n{done.stdout}{done.stderr}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def wait_for(what, condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what} within {timeout} s")


def stop(process, timeout=10):
    """Ends a process this script started (by its pid), if it still runs."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if "--regenerate" in sys.argv[2:]:
    regenerate()
    sys.exit(0)


# --- Checks ---------------------------------------------------------------------------------

@check("yamllint")
def _():
    sh(TOOLS / "yamllint", "--strict", "-c", ".yamllint", "deploy", "helm", ".yamllint")


def check_crds(docs, where):
    """Structural checks of the CRD objects kubernetes-validate cannot check."""
    auth = {d["metadata"]["name"]: d for d in docs if d["kind"] == "TriggerAuthentication"}
    for doc in docs:
        kind, spec = doc["kind"], doc.get("spec", {})
        if kind == "PrometheusRule":
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", where
            for rule in all_rules(spec):
                assert rule["alert"] and rule["expr"] and rule["labels"]["severity"], f"{where}: {rule}"
                assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), f"{where}: {rule['alert']}"
        elif kind in ("ServiceMonitor", "PodMonitor"):
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", where
            assert spec["jobLabel"] == "app.kubernetes.io/name", f"{where}: the alerts select job=webhook-dispatcher"
            endpoint = spec["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"][0]
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
            ref = trigger.get("authenticationRef")
            if ref and ref.get("kind", "TriggerAuthentication") == "TriggerAuthentication" and auth:
                assert ref["name"] in auth, f"{where}: the ScaledObject references {ref['name']}, not rendered"
        elif kind == "TriggerAuthentication":
            assert doc["apiVersion"] == "keda.sh/v1alpha1", where
            refs = spec["secretTargetRef"]
            assert refs and all(r["parameter"] and r["name"] and r["key"] for r in refs), f"{where}: {refs}"


def check_workload(docs, where):
    """What docs/operations.md promises about the Deployment."""
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
    assert isinstance(pod["enableServiceLinks"], bool), f"{where}: enableServiceLinks is always set"
    config = by_kind["ConfigMap"]["data"]
    drain = int(config["WD_DRAIN_TIMEOUT"].rstrip("s"))
    assert pod["terminationGracePeriodSeconds"] > drain, f"{where}: grace period must exceed the drain timeout"
    ports = {p["name"] for p in by_kind["Service"]["spec"]["ports"]}
    assert ports == {"http", "metrics"}, where
    assert "PodDisruptionBudget" in by_kind, where


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
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"] is False
    listed = set(yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"])
    assert listed == {f.name for f in files} - {"kustomization.yaml", "secret.example.yaml"}, listed


@check("kubernetes_config_is_accepted_by_the_binary")
def _():
    docs = [d for f in sorted(KUBE.glob("*.yaml")) for d in documents(f.read_text()) if d.get("kind") != "Kustomization"]
    check_config_starts(kubelet_environment(docs, NEIGHBOUR_SERVICES), "deploy/kubernetes")


@check("chart_rules_render_deploy_rules")
def _():
    rendered = chart_rules()
    assert canonical_rules() == rendered, \
        "deploy/prometheus/alerts.yaml differs from the chart's PrometheusRule: ./scripts/validate-deploy --regenerate"
    plain = documents((KUBE / "prometheusrule.yaml").read_text())[0]
    assert plain["spec"] == rendered, \
        "deploy/kubernetes/prometheusrule.yaml differs from the chart's PrometheusRule: ./scripts/validate-deploy --regenerate"


@check("promtool_check_rules")
def _():
    sh("promtool", "check", "rules", RULES)
    # The rules as a release with other values renders them are valid PromQL too.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as custom:
        custom.write(yaml.safe_dump(chart_rules(EVERY_TOGGLE)))
        custom.flush()
        sh("promtool", "check", "rules", custom.name)


@check("promtool_test_rules")
def _():
    out = sh("promtool", "test", "rules", "alerts.test.yaml", cwd=DEPLOY / "prometheus")
    assert "SUCCESS" in out, out


def github_anchors(markdown):
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    for line in markdown.splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def exported_metrics():
    source = "".join(path.read_text() for path in sorted((ROOT / "src" / "metrics").glob("*.rs")))
    names = set(re.findall(r'"(webhook_[a-z_]+)"', source))
    assert len(names) > 10, "no metric names found in src/metrics/"
    return names | EXTRA_METRICS


def check_metric_names(expr, where):
    known = exported_metrics()
    for match in METRIC.finditer(expr):
        name = match.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in known or base in known, f"{where}: {name} is not exported (src/metrics/)"


@check("every_alert_keeps_cluster_namespace_and_job_has_a_runbook_and_tests")
def _():
    anchors = github_anchors(OPERATIONS.read_text())
    suite = yaml.safe_load((DEPLOY / "prometheus" / "alerts.test.yaml").read_text())
    expectations = {}
    for test in suite["tests"]:
        for case in test.get("alert_rule_test", []):
            expectations.setdefault(case["alertname"], set()).add(bool(case["exp_alerts"]))
    rules = all_rules(canonical_rules())
    assert {r["alert"] for r in rules if r["labels"]["severity"] == "critical"} == CRITICAL, \
        "critical (paging) is kept for what stops delivery"
    for rule in rules:
        name, expr = rule["alert"], rule["expr"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), f"{name}: {key}"
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}", name
        assert name.lower() in anchors, f"{name}: docs/operations.md has no heading for #{name.lower()}"
        check_metric_names(expr, name)
        for match in METRIC.finditer(expr):
            assert match.group(2) and 'job="webhook-dispatcher"' in match.group(2), f"{name}: {match.group(0)} without the job"
        if not expr.startswith("absent("):
            groupings = re.findall(r"\bby \(([^)]*)\)", expr)
            assert groupings, f"{name}: aggregate by (cluster, namespace, job, ...)"
            for grouping in groupings:
                labels = {label.strip() for label in grouping.split(",")}
                assert {"cluster", "namespace", "job"} <= labels, f"{name}: by ({grouping}) drops cluster, namespace or job"
        if "dead_letter" in expr:
            assert rule["labels"]["severity"] == "warning", f"{name}: dead letters do not page"
            window = max(int(w) for w in re.findall(r"\[(\d+)m\]", expr))
            assert int(rule["for"].rstrip("m")) > window, f"{name}: `for` must outlast the window (one dead letter)"
        assert expectations.get(name) == {True, False}, f"{name}: needs a firing and a non-firing promtool test"
    quiet = [t for t in suite["tests"] if "one dead letter" in t["name"]]
    assert quiet, "a promtool test of one dead letter"
    assert {c["alertname"] for c in quiet[0]["alert_rule_test"] if not c["exp_alerts"]} == {r["alert"] for r in rules}, \
        "the one-dead-letter test expects silence from every alert"


@check("grafana_dashboard_is_complete")
def _():
    dashboard = json.loads((DEPLOY / "grafana" / "webhook-dispatcher.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"datasource", "cluster", "namespace", "job", "pod"} <= set(variables), variables.keys()
    # With one Prometheus per cluster there is no cluster label: "All" (.*) matches its absence.
    assert variables["cluster"]["includeAll"] and variables["cluster"]["allValue"] == ".*"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}", variable["name"]
    exprs = []
    for panel in dashboard["panels"]:
        assert panel["targets"] and panel["description"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            exprs.append(expr)
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            check_metric_names(expr, panel["title"])
            for match in METRIC.finditer(expr):
                matchers = match.group(2) or ""
                for label in ("cluster", "namespace", "job", "pod"):
                    assert f'{label}=~"${label}"' in matchers, f"{panel['title']}: {match.group(0)} ignores ${label}"
    # No two panels on the same cell of the grid.
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        for cell in {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}:
            assert cell not in cells, f"{panel['title']} overlaps another panel"
            cells.add(cell)
    text = " ".join(exprs)
    for metric in ("webhook_requests_total", "webhook_request_duration_seconds_bucket", "webhook_inflight_requests",
                   "webhook_retries_scheduled_total", "webhook_dead_letters_total", "webhook_consumer_lag",
                   "webhook_oauth_token_requests_total", "webhook_template_cache_requests_total", "webhook_build_info",
                   "process_resident_memory_bytes", "process_cpu_seconds_total", "webhook_partitions_assigned",
                   "webhook_topic_partitions"):
        assert metric in text, f"no panel uses {metric}"
    assert any("webhook_consumer_lag" in e and 'topic=~"$retry_topic"' in e for e in exprs), "no retry tier lag panel"


@check("chart_dashboard_copy_matches_deploy")
def _():
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
    chart.validate_schema({**REQUIRED, "global": {"imageRegistry": "r.example.com", "anything": [1]}})
    chart.validate_schema(EVERY_TOGGLE)
    for bad in ({"config": {"kafkaBrokers": "k", "maxInflight": 0}}, {"colour": "red"},
                {"config": {"kafkaBrokers": "k", "drainTimeout": "soon"}}, {"config": {"kafkaBrokers": "k", "logFormat": "xml"}},
                {**REQUIRED, "extraEnvVars": {"WD_A": "b"}}, {**REQUIRED, "extraVolumeMounts": [{"name": "ca"}]},
                {**REQUIRED, "enableServiceLinks": "no"},
                {**REQUIRED, "monitoring": {"prometheusRule": {"rules": {"WebhookDispatcherDown": {"for": "soon"}}}}},
                {**REQUIRED, "monitoring": {"prometheusRule": {"rules": {"NoSuchAlert": {"enabled": False}}}}},
                {**REQUIRED, "autoscaling": {"triggerAuthentication": {"secretKeys": {"passwd": "p"}}}},
                {**REQUIRED, "topologySpreadConstraints": [{"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}]},
                {**REQUIRED, "networkPolicy": {"enabled": True, "egress": []}},
                {**REQUIRED, "podDisruptionBudget": {"unhealthyPodEvictionPolicy": "Always"}},
                {**REQUIRED, "monitoring": {"podMonitor": {"relabelings": {"cluster": "eu-1"}}}}):
        try:
            chart.validate_schema(bad)
        except helm.HelmError:
            continue
        raise AssertionError(f"values.schema.json accepted {bad}")
    try:
        chart.render({"secrets": {"adminToken": "an-admin-token-of-32-characters"}}, name="wd")
        raise AssertionError("rendered without config.kafkaBrokers")
    except helm.HelmError as err:
        assert "kafkaBrokers" in str(err), err


def check_rendering(values, expected_kinds, where):
    docs = render(values)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(expected_kinds), f"{where}: {kinds}"
    kubernetes_validate_docs(docs)
    check_crds(docs, where)
    workload = [d for d in docs if d["kind"] in ("Deployment", "ConfigMap", "Service", "PodDisruptionBudget")]
    check_workload([d for d in workload if not d["metadata"]["name"].endswith("-dashboard")], where)
    return docs


@check("helm_default_values_render_valid_objects")
def _():
    docs = check_rendering(REQUIRED, ["ConfigMap", "Deployment", "PodDisruptionBudget", "Pod", "Secret", "Service",
                                      "ServiceAccount"], "helm defaults")
    check_config_starts(kubelet_environment(docs), "helm defaults")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False, "no service links by default"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":0.1.0")


@check("rollouts_and_drains_finish_with_idle_replicas")
def _():
    """Readiness does not wait for a partition (a surge pod or an idle replica owns none), and
    a pod that is not ready never blocks a drain where the cluster supports saying so. There is
    no cluster here: what is checked is the rendering, for each Kubernetes version."""
    for kube_version, policy in [(None, "AlwaysAllow"), ("v1.30.0", "AlwaysAllow"), ("v1.27.0", "AlwaysAllow"),
                                 ("v1.26.5", None), ("v1.25.0", None)]:
        docs = render(REQUIRED, kube_version=kube_version)
        deployment = one(docs, "Deployment")
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        assert probe["httpGet"]["path"] == "/readyz", probe
        assert one(docs, "PodDisruptionBudget")["spec"].get("unhealthyPodEvictionPolicy") == policy, kube_version
    kept = render({**REQUIRED, "podDisruptionBudget": {"unhealthyPodEvictionPolicy": ""}}, kube_version="v1.30.0")
    assert "unhealthyPodEvictionPolicy" not in one(kept, "PodDisruptionBudget")["spec"]
    assert yaml.safe_load((KUBE / "pdb.yaml").read_text())["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


@check("helm_test_hook_asks_readyz")
def _():
    docs = render(REQUIRED)
    test = one(docs, "Pod")
    assert test["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert test["spec"]["restartPolicy"] == "Never"
    script = " ".join(test["spec"]["containers"][0]["command"])
    service = one(docs, "Service")
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "http")
    assert f"http://{service['metadata']['name']}:{port}/readyz" in script, script
    assert "wget" in script, script
    selector = service["spec"]["selector"]
    assert any(test["metadata"]["labels"].get(k) != v for k, v in selector.items()), "the Service would select the test pod"
    assert not render({**REQUIRED, "tests": {"enabled": False}}) == docs
    assert "Pod" not in [d["kind"] for d in render({**REQUIRED, "tests": {"enabled": False}})]


@check("helm_every_toggle_renders_valid_objects")
def _():
    docs = check_rendering(EVERY_TOGGLE, ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Pod",
                                          "PrometheusRule", "ScaledObject", "Service", "ServiceAccount", "ServiceMonitor",
                                          "TriggerAuthentication"], "helm toggles")
    deployment = one(docs, "Deployment")
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["envFrom"][1:] == [{"secretRef": {"name": "webhook-dispatcher-credentials"}},
                                        {"secretRef": {"name": "webhook-dispatcher-extra"}}], container["envFrom"]
    assert container["env"] == EVERY_TOGGLE["extraEnvVars"], container.get("env")
    assert pod["volumes"] == EVERY_TOGGLE["extraVolumes"] and container["volumeMounts"] == EVERY_TOGGLE["extraVolumeMounts"]
    dashboard = one(docs, "ConfigMap", "-dashboard")
    assert json.loads(dashboard["data"]["webhook-dispatcher.json"]) == json.loads((DEPLOY / "grafana" / "webhook-dispatcher.json").read_text())
    scaled = one(docs, "ScaledObject")
    assert scaled["spec"]["maxReplicaCount"] == 24
    auth = one(docs, "TriggerAuthentication")
    assert scaled["spec"]["triggers"][0]["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert pod["enableServiceLinks"] is True
    assert pod["priorityClassName"] == "campaigns-high"
    selector = one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert pod["topologySpreadConstraints"] == [{**EVERY_TOGGLE["topologySpreadConstraints"][0],
                                                 "labelSelector": {"matchLabels": selector}}], pod["topologySpreadConstraints"]
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == selector and policy["policyTypes"] == ["Ingress"]
    by_port = {rule["ports"][0]["port"]: rule["from"] for rule in policy["ingress"]}
    assert by_port == {"http": [{"podSelector": {}}], "metrics": EVERY_TOGGLE["networkPolicy"]["metricsFrom"]}, by_port
    assert {p["name"] for p in pod["containers"][0]["ports"]} >= set(by_port), "the policy names the container's ports"
    endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    assert endpoint["relabelings"] == EVERY_TOGGLE["monitoring"]["serviceMonitor"]["relabelings"]
    existing = {**EVERY_TOGGLE["autoscaling"], "triggerAuthentication": {"existingName": "kafka", "kind": "ClusterTriggerAuthentication"}}
    other = render({**EVERY_TOGGLE, "autoscaling": existing})
    assert "TriggerAuthentication" not in [d["kind"] for d in other]
    assert one(other, "ScaledObject")["spec"]["triggers"][0]["authenticationRef"] == {"name": "kafka", "kind": "ClusterTriggerAuthentication"}
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {"sasl": ("keda-kafka", "sasl"), "username": ("keda-kafka", "username"), "password": ("keda-kafka", "password"),
                    "tls": ("keda-kafka", "tls"), "ca": ("keda-kafka", "ca.crt")}, refs
    rules = {r["alert"]: r for r in all_rules(one(docs, "PrometheusRule")["spec"])}
    assert "WebhookRetryBacklogHigh" not in rules
    assert rules["WebhookDeadLetterRatioHigh"]["for"] == "30m" and "> 0.1" in rules["WebhookDeadLetterRatioHigh"]["expr"]
    assert rules["WebhookDeadLetterRatioHigh"]["labels"] == {"severity": "ticket", "team": "campaigns"}
    for rule in rules.values():
        assert 'job="campaigns-webhooks"' in rule["expr"] and 'job="webhook-dispatcher"' not in rule["expr"], rule["alert"]
        assert rule["labels"]["team"] == "campaigns", rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example.com/webhook-dispatcher/operations#{rule['alert'].lower()}"
    assert one(docs, "Pod")["spec"]["containers"][0]["image"] == "registry.example.com/busybox:1.36.1"
    config = one(docs, "ConfigMap", "-webhook-dispatcher")["data"]
    assert config["WD_MAX_PROFILES"] == "5000" and config["WD_HTTPS_ONLY"] == "true"
    env = kubelet_environment(docs, NEIGHBOUR_SERVICES)
    assert env["WD_MAX_PER_HOST"] == "32" and "sasl.password" in env["WD_KAFKA_PROPERTIES"], "env wins over envFrom"
    check_config_starts(env, "helm toggles")


@check("helm_pod_monitor_scrapes_the_pods_instead_of_the_service")
def _():
    relabel = [{"targetLabel": "cluster", "replacement": "eu-1"}]
    values = {**REQUIRED, "monitoring": {"podMonitor": {"enabled": True, "relabelings": relabel}}}
    docs = render(values)
    monitor = one(docs, "PodMonitor")
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name", "the job label the alerts select"
    assert monitor["spec"]["selector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "metrics" and endpoint["relabelings"] == relabel, endpoint
    assert "ServiceMonitor" not in [d["kind"] for d in docs]
    check_crds(docs, "pod monitor")
    both = {**REQUIRED, "monitoring": {"podMonitor": {"enabled": True}, "serviceMonitor": {"enabled": True}}}
    try:
        render(both)
    except Exception as err:  # noqa: BLE001 - the chart's own refusal
        assert "enable one" in str(err), err
    else:
        raise AssertionError("a PodMonitor beside a ServiceMonitor was rendered: every pod scraped twice")


@check("helm_managed_redis_tls_files_reach_the_config")
def _():
    files = {"redisCaFile": "/etc/redis-tls/ca.crt", "redisClientCertFile": "/etc/redis-tls/tls.crt",
             "redisClientKeyFile": "/etc/redis-tls/tls.key"}
    config = one(render({**REQUIRED, "config": {**REQUIRED["config"], **files}}), "ConfigMap")["data"]
    assert (config["WD_REDIS_CA_FILE"], config["WD_REDIS_CLIENT_CERT_FILE"], config["WD_REDIS_CLIENT_KEY_FILE"]) == \
        tuple(files.values()), config
    assert "WD_REDIS_CA_FILE" not in one(render(REQUIRED), "ConfigMap")["data"]


@check("kubelet_service_links_do_not_stop_the_start")
def _():
    for release in RELEASES:
        docs = render({**REQUIRED, "enableServiceLinks": True}, name=release)
        assert one(docs, "Deployment")["spec"]["template"]["spec"]["enableServiceLinks"] is True
        env = kubelet_environment(docs, NEIGHBOUR_SERVICES)
        service = one(docs, "Service")["metadata"]["name"].replace("-", "_").upper()
        for name in (f"{service}_PORT", f"{service}_SERVICE_PORT_HTTP", f"{service}_PORT_9090_TCP_ADDR",
                     "WD_REDIS_SERVICE_HOST", "WD_REDIS_PORT", "WD_REDIS_PORT_6379_TCP_PROTO"):
            assert name in env, f"{release}: {name} missing from the kubelet's environment"
        done = run_config(env)
        assert done.returncode == 0, \
            f"release {release}: `config` with the kubelet's environment exited {done.returncode}:\n{done.stdout}{done.stderr}"
        # Only variables shaped like service links are ignored: a typo still stops the start.
        typo = run_config({**env, "WD_KAFKA_BROKER": "kafka-0.kafka:9092"})
        assert typo.returncode != 0 and "WD_KAFKA_BROKER" in typo.stdout + typo.stderr, \
            f"release {release}: a typo (WD_KAFKA_BROKER) beside the service links was accepted:\n{typo.stdout}{typo.stderr}"


@check("kubelet_environment_runs_and_stops_cleanly")
def _():
    """`run` with the kubelet's environment of each release: answers /healthz, becomes ready
    on an embedded Kafka cluster (a fresh one per release) and Redis, and exits 0 on SIGTERM."""
    redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    with tempfile.TemporaryDirectory() as tmp:
        for release in RELEASES:
            docs = render({**REQUIRED, "enableServiceLinks": True}, name=release)
            log_path = Path(tmp) / f"{release}.log"
            with open(Path(tmp) / f"{release}-kafka.log", "w") as kafka_log:
                kafka = subprocess.Popen([BINARY, "mock-kafka"], stdout=subprocess.PIPE, stderr=kafka_log, text=True)
            service = None
            try:
                ready, _, _ = select.select([kafka.stdout], [], [], 30)
                assert ready, "mock-kafka printed no bootstrap servers within 30 s"
                brokers = kafka.stdout.readline().strip()
                assert re.fullmatch(r"127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+)*", brokers), f"mock-kafka printed {brokers!r}"
                http, metrics = free_port(), free_port()
                env = {**kubelet_environment(docs, NEIGHBOUR_SERVICES), "WD_KAFKA_BROKERS": brokers, "WD_REDIS_URL": redis,
                       "WD_REDIS_PREFIX": f"validate-deploy-{os.getpid()}-{release}:",
                       "WD_HTTP_ADDR": f"127.0.0.1:{http}", "WD_METRICS_ADDR": f"127.0.0.1:{metrics}"}
                with open(log_path, "w") as log:
                    service = subprocess.Popen([BINARY, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
                alive = lambda: service.poll() is not None or http_status(f"http://127.0.0.1:{http}/healthz") == 200  # noqa: E731
                wait_for(f"{release}: /healthz answering", alive, 30)
                assert service.poll() is None, f"{release}: `run` exited {service.returncode}"
                wait_for(f"{release}: /readyz 200", lambda: http_status(f"http://127.0.0.1:{http}/readyz") == 200, 60)
                # The dashboard's process panels and version stat have their series from the start.
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as answer:
                    exposition = answer.read().decode()
                for name in sorted(EXTRA_METRICS - {"up"}):
                    assert f"# TYPE {name} " in exposition, f"{release}: /metrics has no {name}"
                assert re.search(r'^webhook_build_info\{version="[^"]+"\} 1$', exposition, re.M), "webhook_build_info{version} 1"
                service.send_signal(signal.SIGTERM)
                code = service.wait(timeout=40)
                assert code == 0, f"{release}: exit code {code} after SIGTERM"
            except Exception:
                if log_path.exists():
                    print(f"--- {release}: the end of `run`'s log\n{log_path.read_text()[-4000:]}", flush=True)
                raise
            finally:
                if service:
                    stop(service)
                stop(kafka)


def documented_install_commands():
    """Every `helm install` command line in a shell block of docs/operations.md and README.md."""
    found = []
    for path in (OPERATIONS, ROOT / "README.md"):
        if not path.exists():
            continue
        for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", path.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip().startswith(("helm install", "helm upgrade")):
                    found.append((path.relative_to(ROOT), line.strip()))
    return found


def deep_merge(base, overlay):
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def helm_values(args):
    """The values `helm install` builds from its arguments (pkg/cli/values MergeValues:
    -f files, then --set-json, --set, --set-string, each parsed by Helm's strvals)."""
    parts = {"files": [], "json": [], "set": [], "string": []}
    options = {"-f": "files", "--values": "files", "--set-json": "json", "--set": "set", "--set-string": "string"}
    flags = {"--create-namespace", "--wait", "--atomic", "--install"}
    positional, namespace, n = [], "default", 0
    while n < len(args):
        arg = args[n]
        name, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in options or name in ("-n", "--namespace"):
            value = inline if inline else args[n + 1]
            n += 1 if inline else 2
            if name in options:
                parts[options[name]].append(value)
            else:
                namespace = value
        elif arg in flags:
            n += 1
        elif arg.startswith("-"):
            raise AssertionError(f"the check does not know the option {arg}: teach helm_values()")
        else:
            positional.append(arg)
            n += 1
    values = {}
    for path in parts["files"]:
        deep_merge(values, helm.values_from_yaml((ROOT / path).read_text()))
    for parse, key in ((helm.parse_set_json, "json"), (helm.parse_set_string, "set"), (helm.parse_set_string_values, "string")):
        for expression in parts[key]:
            deep_merge(values, parse(expression))
    return positional, namespace, values


@check("documented_helm_install_works_when_pasted")
def _():
    # What a shell hands helm for an unescaped comma: Helm's parser refuses it.
    try:
        helm.parse_set_string("config.kafkaBrokers=kafka-0.kafka:9092,kafka-1.kafka:9092")
        raise AssertionError("strvals accepted an unescaped comma")
    except helm.HelmError:
        pass
    commands = documented_install_commands()
    assert any(str(path) == "docs/operations.md" for path, _ in commands), "docs/operations.md documents no helm install"
    for path, command in commands:
        words = shlex.split(command)
        assert words[:2] in (["helm", "install"], ["helm", "upgrade"]), command
        where = f"{path}: {command}"
        try:
            positional, namespace, values = helm_values(words[2:])
        except helm.HelmError as err:
            raise AssertionError(f"{where}\nHelm refuses the arguments as the shell passes them: {err}") from err
        release, chart = positional[-2:]
        assert (ROOT / chart).resolve() == CHART.resolve(), f"{path}: chart {chart}"
        try:
            docs = render(values, name=release, namespace=namespace)
        except helm.HelmError as err:
            raise AssertionError(f"{where}\n{err}") from err
        kubernetes_validate_docs(docs)
        check_crds(docs, where)
        brokers = next(d["data"]["WD_KAFKA_BROKERS"] for d in docs if d["kind"] == "ConfigMap" and "WD_KAFKA_BROKERS" in d["data"])
        assert re.fullmatch(r"[\w.-]+:\d+(,[\w.-]+:\d+)+", brokers), f"{where}: WD_KAFKA_BROKERS={brokers!r}, not a list of brokers"
        documented = re.search(r"config\.kafkaBrokers=(\S+?)['\"]?(\s|$)", command).group(1).replace("\\,", ",")
        assert brokers == documented, f"{where}: WD_KAFKA_BROKERS={brokers!r}, the command says {documented!r}"


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


def cargo_manifest_files(manifest):
    """The files cargo needs to load Cargo.toml, or it refuses it: the source file of every
    target it declares or finds by itself (src/lib.rs, src/main.rs), as Cargo infers a path
    left out, and the Cargo.toml of every path dependency and patch."""
    files = {path for path in ("src/lib.rs", "src/main.rs") if (ROOT / path).exists()}
    tables = [manifest.get(kind, {}) for kind in ("dependencies", "dev-dependencies", "build-dependencies")]
    tables += [t.get(kind, {}) for t in manifest.get("target", {}).values()
               for kind in ("dependencies", "dev-dependencies", "build-dependencies")]
    tables += list(manifest.get("patch", {}).values())
    for table in tables:
        for dependency in table.values():
            if isinstance(dependency, dict) and "path" in dependency:
                files.add(f"{dependency['path'].rstrip('/')}/Cargo.toml")
    if "path" in manifest.get("lib", {}):
        files.add(manifest["lib"]["path"])
    folders = {"bin": "src/bin", "bench": "benches", "test": "tests", "example": "examples"}
    for kind, folder in folders.items():
        for target in manifest.get(kind, []):
            if "path" in target:
                files.add(target["path"])
            elif kind == "bin" and target["name"] == manifest["package"]["name"]:
                files.add("src/main.rs")
            else:
                name = target["name"]
                nested = f"{folder}/{name}/main.rs"
                files.add(nested if (ROOT / nested).exists() else f"{folder}/{name}.rs")
    return files


# What the dependency-cache step may run to make its stubs; anything else is not run here.
STUB_COMMANDS = {"mkdir", "echo", "printf", "touch", "cp", "cat", "for", "done", "true"}


def dockerfile_stubs_missing(dockerfile, manifest):
    """The files of cargo_manifest_files that the build stage's first cargo command would not
    find: what the stage's COPY instructions put in its WORKDIR, plus what the commands of the
    first RUN naming cargo create before cargo runs (run with sh in an empty directory)."""
    text = re.sub(r"\\\n", " ", dockerfile)
    build = re.split(r"^FROM ", text, flags=re.M)[1]
    instructions = [l.strip() for l in build.splitlines()[1:] if l.strip() and not l.lstrip().startswith("#")]
    with tempfile.TemporaryDirectory() as tmp:
        for line in instructions:
            word, _, rest = line.partition(" ")
            if word == "COPY" and not rest.startswith("--"):
                *sources, dest = rest.split()
                for source in sources:
                    into = Path(tmp) / dest.lstrip("/")
                    if (ROOT / source).is_dir():  # COPY copies a folder's contents
                        shutil.copytree(ROOT / source, into, dirs_exist_ok=True)
                    else:
                        target = into / Path(source).name if dest.endswith("/") or len(sources) > 1 else into
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy(ROOT / source, target)
            elif word == "RUN" and re.search(r"\bcargo\b", rest):
                stub = re.split(r"(?:&&|;|^)\s*cargo\b", re.sub(r"^(--\S+\s+)*", "", rest))[0]
                lexer = shlex.shlex(stub, posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                commands, start = [], True
                for token in lexer:
                    if token in ("&&", "||", ";", "|", "&"):
                        start = True
                    elif start and token not in ("do", "then"):
                        commands.append(token)
                        start = False
                refused = set(commands) - STUB_COMMANDS
                assert not refused, f"the stub step runs {sorted(refused)}, which this check does not run: teach STUB_COMMANDS"
                sh("sh", "-c", stub, cwd=tmp)
                return sorted(f for f in cargo_manifest_files(manifest) if not (Path(tmp) / f).is_file())
    raise AssertionError("the build stage runs no cargo command")


@check("dockerfile_dependency_step_has_every_file_cargo_toml_names")
def _():
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    missing = dockerfile_stubs_missing((ROOT / "Dockerfile").read_text(), manifest)
    assert not missing, \
        f"the Dockerfile's first cargo command would find no {', '.join(missing)}: cargo would refuse Cargo.toml"


failed = [name for name, err in results if err]
print(f"\ntest result: {'ok' if not failed else 'FAILED'}. {len(results) - len(failed)} passed; {len(failed)} failed; "
      "0 ignored; 0 measured; 0 filtered out (deploy/ and helm/)")
sys.exit(1 if failed else 0)
