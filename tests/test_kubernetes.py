"""Checks of the Kubernetes manifests in deploy/kubernetes/.

What is validated, and how:
- core kinds (Deployment, Service, ConfigMap, Secret, NetworkPolicy): the
  Kubernetes OpenAPI schemas shipped by `kubernetes-validate`, strict (an
  unknown field is an error), offline;
- Prometheus Operator kinds (ServiceMonitor, PrometheusRule): the models
  `cloudcoil-models-prometheus-operator` generates from the operator's CRDs
  (types, enums, patterns, required fields), plus a round trip that turns
  unknown fields into errors; the rules themselves with promtool;
- what no schema sees: the wiring between objects (selectors, port names,
  mount paths), the config passing the exporter's own --config.check, and
  the PrometheusRule being the current output of its generator.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pydantic
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator

import sandbox_exporter

from helpers import load_script

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "deploy" / "kubernetes"
GENERATOR = REPO / "scripts" / "generate_prometheusrule.py"
RULE_TESTS = REPO / "tests" / "rules"
DOCKERFILE = REPO / "Dockerfile"
EXPORTER_PORT = 9929
# The oldest Kubernetes the manifests are meant for, and the newest schema the
# installed kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.27", kubernetes_validate.latest_version())
OPERATOR_GROUP = "monitoring.coreos.com"
OPERATOR_MODELS = {
    "ServiceMonitor": operator.ServiceMonitor,
    "PrometheusRule": operator.PrometheusRule,
}


generator = load_script(GENERATOR)


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())


def manifest_files() -> list[str]:
    return list(kustomization()["resources"])


def all_objects() -> list[dict[str, Any]]:
    return [
        document
        for name in manifest_files()
        for document in yaml.safe_load_all((MANIFESTS / name).read_text())
        if document
    ]


def the(kind: str, objects: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    found = [o for o in (objects if objects is not None else all_objects()) if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def named(kind: str, name: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name!r}, found {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector picks an object with `labels`; an empty
    selector picks everything, as in Kubernetes."""
    assert set(selector) <= {"matchLabels"}, f"only matchLabels is understood here: {selector}"
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def run(command: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH; the test command installs it (see scripts/test)")
    return path


# ------------------------------------------------------------------- schemas


def validate_kubernetes(document: dict[str, Any], version: str) -> None:
    """Raises when `document` breaks the Kubernetes schema of `version`."""
    kubernetes_validate.validate(document, version, strict=True)


def validate_operator(document: dict[str, Any]) -> None:
    """Raises when `document` breaks its Prometheus Operator CRD schema.

    The models ignore unknown fields; dumping what they understood and
    comparing it with the input turns a misspelt field into an error.
    """
    model = OPERATOR_MODELS[document["kind"]].model_validate(document)
    understood = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if understood != document:
        raise UnknownFields(f"fields the CRD does not define: {document} != {understood}")


class UnknownFields(ValueError):
    """A Prometheus Operator object with fields its CRD does not define."""


def test_kustomization_lists_every_manifest() -> None:
    on_disk = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    listed = manifest_files()
    assert len(listed) == len(set(listed))
    assert set(listed) == on_disk


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_manifests_match_kubernetes_schemas(version: str) -> None:
    checked = set()
    for document in all_objects():
        if document["apiVersion"].startswith(OPERATOR_GROUP + "/"):
            continue
        # An unknown kind raises SchemaNotFoundError: that fails too.
        validate_kubernetes(document, version)
        checked.add(document["kind"])
    assert checked == {"ConfigMap", "Secret", "Deployment", "Service", "NetworkPolicy"}


def test_operator_manifests_match_crd_schemas() -> None:
    operator_objects = [o for o in all_objects() if o["apiVersion"] == f"{OPERATOR_GROUP}/v1"]
    assert sorted(o["kind"] for o in operator_objects) == ["PrometheusRule", "ServiceMonitor"]
    for document in operator_objects:
        validate_operator(document)


def _misspell_security_context(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = the("Deployment", objects)
    container(deployment)["securityContext"]["readOnlyRootFileSystem"] = True
    return deployment


def _misspell_scrape_interval(objects: list[dict[str, Any]]) -> dict[str, Any]:
    monitor = the("ServiceMonitor", objects)
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    return monitor


def _bad_scrape_timeout(objects: list[dict[str, Any]]) -> dict[str, Any]:
    monitor = the("ServiceMonitor", objects)
    monitor["spec"]["endpoints"][0]["scrapeTimeout"] = "10 seconds"
    return monitor


def _rule_without_expr(objects: list[dict[str, Any]]) -> dict[str, Any]:
    rule = the("PrometheusRule", objects)
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    return rule


@pytest.mark.parametrize(
    ("breakage", "error", "message"),
    [
        (_misspell_security_context, kubernetes_validate.ValidationError, "readOnlyRootFileSystem"),
        (_misspell_scrape_interval, UnknownFields, "intervall"),
        (_bad_scrape_timeout, pydantic.ValidationError, "scrapeTimeout"),
        (_rule_without_expr, pydantic.ValidationError, "expr"),
    ],
)
def test_schema_checks_catch_mistakes(
    breakage: Callable[[list[dict[str, Any]]], dict[str, Any]],
    error: type[Exception],
    message: str,
) -> None:
    # The checks above are only worth something if they can fail.
    broken = breakage(all_objects())
    with pytest.raises(error, match=message):
        if broken["apiVersion"].startswith(OPERATOR_GROUP + "/"):
            validate_operator(broken)
        else:
            validate_kubernetes(broken, KUBERNETES_VERSIONS[0])


# ---------------------------------------------------------------- Deployment


def test_probes_use_the_health_endpoints() -> None:
    main = container(the("Deployment"))
    port_names = {port["name"] for port in main["ports"]}
    assert main["livenessProbe"]["httpGet"]["path"] == "/-/healthy"
    assert main["readinessProbe"]["httpGet"]["path"] == "/-/ready"
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"]["port"] in port_names | {EXPORTER_PORT}
        assert main[probe]["httpGet"].get("scheme", "HTTP") == "HTTP"


def test_port_is_named_and_is_the_exporters() -> None:
    main = container(the("Deployment"))
    assert main["ports"] == [
        {"name": "http-metrics", "containerPort": EXPORTER_PORT, "protocol": "TCP"}
    ]
    assert f"--web.listen-address=:{EXPORTER_PORT}" in main["args"]


def dockerfile_user() -> tuple[int, int]:
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert len(users) == 1, "the Dockerfile should set one numeric USER uid:gid"
    uid, gid = users[0]
    return int(uid), int(gid)


def test_runs_unprivileged_with_a_read_only_root() -> None:
    deployment = the("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)
    uid, gid = dockerfile_user()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (uid, gid)
    assert uid != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security.get("privileged", False) is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "add" not in security["capabilities"]
    # Nothing in the pod may undo the pod-level settings.
    assert "runAsUser" not in security and security.get("runAsNonRoot", True) is True


def test_resources_are_requested_and_limited() -> None:
    resources = container(the("Deployment"))["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) == {"cpu", "memory"}, bound


def test_image_tag_is_the_package_version() -> None:
    image = container(the("Deployment"))["image"]
    assert image == f"sandbox-exporter:{sandbox_exporter.__version__}"


# ------------------------------------------------------ config and credentials


def materialize_volumes(objects: list[dict[str, Any]], root: Path) -> dict[str, Path]:
    """Writes each ConfigMap/Secret volume of the Deployment under `root`, the
    way the kubelet would mount it; returns {mount path: local directory}."""
    deployment = the("Deployment", objects)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts: dict[str, Path] = {}
    for mount in container(deployment)["volumeMounts"]:
        volume = volumes[mount["name"]]
        assert "subPath" not in mount, "subPath mounts never see ConfigMap/Secret updates"
        assert mount.get("readOnly") is True
        if "configMap" in volume:
            files = named("ConfigMap", volume["configMap"]["name"], objects)["data"]
        else:
            secret = named("Secret", volume["secret"]["secretName"], objects)
            assert "data" not in secret, "the test reads stringData only"
            files = secret["stringData"]
        directory = root / mount["name"]
        directory.mkdir()
        for key, value in files.items():
            (directory / key).write_text(value)
        mounts[mount["mountPath"]] = directory
    return mounts


def rewrite_paths(text: str, mounts: dict[str, Path]) -> str:
    # Longest first, so that a mount path that prefixes another cannot win.
    for mount_path in sorted(mounts, key=len, reverse=True):
        text = text.replace(mount_path.rstrip("/") + "/", f"{mounts[mount_path]}/")
    return text


def config_check(objects: list[dict[str, Any]], root: Path) -> subprocess.CompletedProcess[str]:
    """Runs the Deployment's own arguments plus --config.check against its
    volumes written to `root`, with every mount path rewritten to them."""
    mounts = materialize_volumes(objects, root)
    for directory in mounts.values():
        for file in directory.iterdir():
            file.write_text(rewrite_paths(file.read_text(), mounts))
    args = [rewrite_paths(arg, mounts) for arg in container(the("Deployment", objects))["args"]]
    executable = Path(sys.executable).with_name("sandbox-exporter")
    assert executable.is_file(), f"{executable}: the package's console script is not installed"
    return run([str(executable), *args, "--config.check"], cwd=root)


def configured_targets(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    config = yaml.safe_load(the("ConfigMap", objects)["data"]["config.yml"])
    return config["targets"]


def test_config_passes_the_exporters_check(tmp_path: Path) -> None:
    objects = all_objects()
    done = config_check(objects, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    targets = configured_targets(objects)
    assert f"config valid: {len(targets)} targets" in done.stdout + done.stderr


def test_config_names_a_password_file_and_a_token_file() -> None:
    auth = [target.get("auth", {}) for target in configured_targets(all_objects())]
    assert len(auth) == 2
    assert any("password_file" in a for a in auth)
    assert any("bearer_token_file" in a for a in auth)
    assert not any(key.endswith("_env") for a in auth for key in a)


def test_config_check_fails_without_the_secret_files(tmp_path: Path) -> None:
    objects = all_objects()
    secret = the("Secret", objects)
    removed = sorted(secret["stringData"])[0]
    leaked = [value for key, value in secret["stringData"].items() if key != removed]
    del secret["stringData"][removed]
    done = config_check(objects, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert removed in output
    for value in leaked:
        assert value not in output


def test_secret_values_are_marked_as_dummies() -> None:
    secret = the("Secret")
    assert secret["type"] == "Opaque"
    for key, value in secret["stringData"].items():
        assert value.startswith("DUMMY-"), key


def test_secret_files_are_not_world_readable() -> None:
    volumes = the("Deployment")["spec"]["template"]["spec"]["volumes"]
    modes = [v["secret"].get("defaultMode", 0o644) for v in volumes if "secret" in v]
    assert modes and all(mode & 0o007 == 0 for mode in modes)


# ------------------------------------------------------------------- wiring


def test_service_selects_the_pods_on_the_named_port() -> None:
    objects = all_objects()
    deployment, service = the("Deployment", objects), the("Service", objects)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"], pod_labels)
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels)
    container_ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in container_ports
    assert port["port"] == container_ports[port["targetPort"]] == EXPORTER_PORT


def test_service_monitor_scrapes_the_service() -> None:
    objects = all_objects()
    service, monitor = the("Service", objects), the("ServiceMonitor", objects)
    assert monitor["spec"]["selector"]["matchLabels"], "an empty selector picks every Service"
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in service_ports
    assert endpoint["path"] == "/metrics"
    assert "namespaceSelector" not in monitor["spec"], "the Service lives beside the monitor"


def test_scrape_job_is_one_the_alerts_watch() -> None:
    # The operator names the job after the Service unless jobLabel says
    # otherwise; SandboxExporterDown only watches jobs its regex matches.
    objects = all_objects()
    monitor = the("ServiceMonitor", objects)
    assert "jobLabel" not in monitor["spec"]
    job = the("Service", objects)["metadata"]["name"]
    rules = [r for g in the("PrometheusRule", objects)["spec"]["groups"] for r in g["rules"]]
    [down] = [r for r in rules if r.get("alert") == "SandboxExporterDown"]
    [pattern] = re.findall(r'job=~"([^"]+)"', down["expr"])
    assert re.fullmatch(pattern, job), (pattern, job)


def policy_ports(rule: dict[str, Any], deployment: dict[str, Any]) -> set[tuple[int, str]]:
    """(port number, protocol) for each port of a NetworkPolicy rule, names
    resolved against the Deployment's container ports."""
    by_name = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    return {(by_name.get(p["port"], p["port"]), p.get("protocol", "TCP")) for p in rule["ports"]}


def test_network_policy_lets_only_prometheus_in_on_the_exporter_port() -> None:
    objects = all_objects()
    deployment, policy = the("Deployment", objects), the("NetworkPolicy", objects)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"], pod_labels)
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    [ingress] = policy["spec"]["ingress"]
    assert policy_ports(ingress, deployment) == {(EXPORTER_PORT, "TCP")}
    # Every source is narrowed to pods by label.
    assert ingress["from"] and all(
        source["podSelector"]["matchLabels"] for source in ingress["from"]
    )


def test_network_policy_lets_out_only_dns_and_the_sandboxes() -> None:
    objects = all_objects()
    deployment, policy = the("Deployment", objects), the("NetworkPolicy", objects)
    sandbox_ports = set()
    for target in configured_targets(objects):
        url = urlsplit(target["url"])
        sandbox_ports.add((url.port or {"http": 80, "https": 443}[url.scheme], "TCP"))
    allowed = set()
    for rule in policy["spec"]["egress"]:
        ports = policy_ports(rule, deployment)
        if ports & {(53, "UDP"), (53, "TCP")}:
            assert ports == {(53, "UDP"), (53, "TCP")}, "DNS shares its rule with nothing"
            assert rule["to"], "DNS goes to the cluster's resolver only"
        allowed |= ports
    assert allowed == {(53, "UDP"), (53, "TCP")} | sandbox_ports


# ----------------------------------------------------------- PrometheusRule


def test_prometheusrule_is_generated_and_current() -> None:
    committed = (MANIFESTS / "prometheusrule.yaml").read_text()
    assert generator.render() == committed, (
        "deploy/kubernetes/prometheusrule.yaml is stale: run scripts/generate_prometheusrule.py"
    )


def test_prometheusrule_holds_exactly_the_rule_files_groups() -> None:
    expected = []
    for relative in generator.RULE_FILES:
        expected.extend(yaml.safe_load((REPO / relative).read_text())["groups"])
    assert "deploy/prometheus/rules/alerts.yml" in generator.RULE_FILES
    assert the("PrometheusRule")["spec"]["groups"] == expected


def extract_rules(directory: Path) -> Path:
    """spec.groups of the PrometheusRule as a Prometheus rule file."""
    path = directory / "prometheusrule-groups.yml"
    path.write_text(yaml.safe_dump({"groups": the("PrometheusRule")["spec"]["groups"]}))
    return path


def test_prometheusrule_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = extract_rules(tmp_path)
    done = run([promtool(), "check", "rules", str(rules)])
    assert done.returncode == 0, done.stdout + done.stderr
    count = sum(len(g["rules"]) for g in the("PrometheusRule")["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in done.stdout


def rule_unit_tests() -> list[Path]:
    """The promtool unit tests whose rule files all feed the PrometheusRule."""
    sources = {(REPO / relative).resolve() for relative in generator.RULE_FILES}
    found = []
    for path in sorted(RULE_TESTS.glob("*.yml")):
        rule_files = yaml.safe_load(path.read_text()).get("rule_files", [])
        if rule_files and {(path.parent / f).resolve() for f in rule_files} <= sources:
            found.append(path)
    return found


def test_prometheusrule_rules_pass_the_projects_rule_tests(tmp_path: Path) -> None:
    # The same cases that test the shipped alerts.yml, run against the rules as the
    # operator will load them.
    tests = rule_unit_tests()
    assert RULE_TESTS / "alerts_test.yml" in tests
    rules = extract_rules(tmp_path)
    for path in tests:
        unit = yaml.safe_load(path.read_text())
        unit["rule_files"] = [str(rules)]
        copy = tmp_path / path.name
        copy.write_text(yaml.safe_dump(unit, sort_keys=False))
        done = run([promtool(), "test", "rules", str(copy)])
        assert done.returncode == 0, f"{path.name}:\n{done.stdout}{done.stderr}"


RULE_FILE_A = """\
# a comment that stays behind
groups:
  # why this group exists
  - name: a
    rules:
      - record: job:up:sum
        expr: >-
          sum by (job) (up)
"""

RULE_FILE_B = """\
groups:
- name: b
  rules:
  - alert: Quiet
    expr: vector(0) > 1
"""


def test_generator_concatenates_rule_files_keeping_comments(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(RULE_FILE_A)
    (tmp_path / "b.yml").write_text(RULE_FILE_B)
    text = generator.render(["a.yml", "b.yml"], repo=tmp_path)
    groups = yaml.safe_load(text)["spec"]["groups"]
    assert [g["name"] for g in groups] == ["a", "b"]
    assert groups[0]["rules"][0]["expr"] == "sum by (job) (up)"
    assert "# why this group exists" in text
    assert "a comment that stays behind" not in text


def test_generator_refuses_duplicate_group_names(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(RULE_FILE_A)
    (tmp_path / "again.yml").write_text(RULE_FILE_A)
    with pytest.raises(generator.RuleFileError, match="a"):
        generator.render(["a.yml", "again.yml"], repo=tmp_path)


def test_generator_refuses_keys_beside_groups(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(RULE_FILE_A + "extra: 1\n")
    with pytest.raises(generator.RuleFileError):
        generator.render(["a.yml"], repo=tmp_path)


def test_generator_check_mode_agrees() -> None:
    done = run([sys.executable, str(GENERATOR), "--check"], cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
