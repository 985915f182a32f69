"""deploy/k8s/: every manifest is valid against the Kubernetes JSON schemas (strict: an
unknown or misspelt field fails), and the pieces fit each other and the gateway."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.tooling import missing

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest Kubernetes the manifests are meant for, and the newest the schemas know.
VERSIONS = ("1.29.0", "latest")


def _docs() -> list[tuple[str, dict]]:
    import yaml
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def _kinds() -> dict[str, dict]:
    return {doc["kind"]: doc for _, doc in _docs()}


def test_the_manifests_are_the_four_pieces():
    assert sorted(_kinds()) == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version):
    try:
        import kubernetes_validate
    except ImportError:
        missing("the Kubernetes schema check needs kubernetes-validate (pip install -e '.[test]')")
    if version == "latest":
        version = kubernetes_validate.latest_version()
    for name, doc in _docs():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} ({doc['kind']}) is not valid Kubernetes {version}: {exc.message} at {list(exc.path)}")


def test_a_broken_manifest_is_caught():
    """The check itself: a misspelt field and a wrong type both fail."""
    try:
        import kubernetes_validate
    except ImportError:
        missing("the Kubernetes schema check needs kubernetes-validate (pip install -e '.[test]')")
    pdb = dict(_kinds()["PodDisruptionBudget"])
    for spec in ({**pdb["spec"], "maxUnavaliable": 1}, {**pdb["spec"], "selector": "app=balance-gateway"}):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate({**pdb, "spec": spec}, VERSIONS[0], strict=True)


def test_the_pieces_fit_each_other_and_the_gateway():
    kinds = _kinds()
    deployment, service, hpa, pdb = (kinds[k] for k in ("Deployment", "Service", "HorizontalPodAutoscaler",
                                                         "PodDisruptionBudget"))
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2 and pdb["spec"]["maxUnavailable"] == 1   # a drain never empties it

    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health?ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    dockerfile = (ROOT / "Dockerfile").read_text()
    port = int(re.search(r"^EXPOSE (\d+)", dockerfile, re.M).group(1))
    assert container["ports"][0]["containerPort"] == port and "--port" in container["args"]
    assert container["args"][container["args"].index("--port") + 1] == str(port)
    uid = int(re.search(r"--uid (\d+)", dockerfile).group(1))
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["GATEWAY_CONFIG"] == "/etc/balance-gateway/gateway.toml" and env["GATEWAY_WORKERS"] == "1"
    # SIGTERM comes after preStop; the grace period covers it and the gateway's own drain (--graceful-timeout 10 s)
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > pre_stop + 10

    # The HPA follows a gauge the gateway really exports, and it is one series per pod.
    from gateway.observability.metrics import GatewayMetrics
    exported = {family.name for family in GatewayMetrics().registry.collect()}
    pods_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics == ["http_server_active_requests"] and set(pods_metrics) <= exported


def test_deployment_docs_name_every_manifest():
    doc = (ROOT / "docs" / "DEPLOYMENT.md").read_text()
    for path in K8S.glob("*.yaml"):
        assert f"deploy/k8s/{path.name}" in doc
