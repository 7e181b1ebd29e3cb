"""Static checks of the Dockerfiles and the Kubernetes manifest: the linters the issue
names (kubernetes-validate strict, checkov, hadolint), the local kustomize overlay, and
the properties of impala.yml that the linters do not know about."""

import os
import re
import subprocess

import pytest
import yaml

from conftest import ROOT, require_tool

KUBERNETES_VERSION = "1.37.0"
DOCKERFILES = ["Dockerfile.learner", "Dockerfile.actor"]


def run(*cmd: str) -> subprocess.CompletedProcess:
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def manifest() -> list[dict]:
  with open(os.path.join(ROOT, "impala.yml")) as f:
    return list(yaml.safe_load_all(f))


def rendered_overlay() -> str:
  result = run(require_tool("kubectl"), "kustomize", ".")
  assert result.returncode == 0, result.stderr
  return result.stdout


def pod_specs(docs: list[dict]) -> dict[str, dict]:
  return {d["metadata"]["name"]: d["spec"]["template"]["spec"]
          for d in docs if d["kind"] in ("Deployment", "StatefulSet")}


def test_kubernetes_validate_strict_on_manifest_and_overlay(tmp_path):
  overlay = tmp_path / "overlay.yml"
  overlay.write_text(rendered_overlay())
  result = run(require_tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION,
               "impala.yml", str(overlay))
  assert result.returncode == 0, result.stdout + result.stderr
  assert result.stdout.count("passed") == 2 * len(manifest())


def test_checkov_reports_no_failed_check():
  result = run(require_tool("checkov"), "--compact", "--quiet", "--skip-download",
               "-f", "impala.yml", *[arg for f in DOCKERFILES for arg in ("-f", f)])
  assert result.returncode == 0, result.stdout + result.stderr
  assert "Failed checks: 0" in result.stdout and "Passed checks" in result.stdout


def test_every_checkov_skip_gives_its_reason():
  text = "".join(open(os.path.join(ROOT, f)).read() for f in ["impala.yml"] + DOCKERFILES)
  skips = re.findall(r"checkov(?:\.io/skip\d+: |:skip=)(CKV\w+)\s*[=:]\s*(.*)", text)
  assert skips and all(len(reason.strip()) > 20 for _, reason in skips), skips


def test_hadolint_passes_on_both_dockerfiles():
  result = run(require_tool("hadolint"), *DOCKERFILES)
  assert result.returncode == 0, result.stdout + result.stderr


def test_local_overlay_uses_local_images_never_pulled():
  docs = list(yaml.safe_load_all(rendered_overlay()))
  containers = [c for spec in pod_specs(docs).values() for c in spec["containers"]]
  assert {c["image"] for c in containers} == {"localhost/impala-learner:0.1.0",
                                              "localhost/impala-actor:0.1.0"}
  assert {c["imagePullPolicy"] for c in containers} == {"Never"}


def test_manifest_pods_are_locked_down():
  specs = pod_specs(manifest())
  assert set(specs) == {"impala-learner", "impala-actors"}
  for name, spec in specs.items():
    assert spec["automountServiceAccountToken"] is False, name
    assert spec["securityContext"]["runAsNonRoot"] is True, name
    assert spec["securityContext"]["runAsUser"] >= 10000, name
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
    writable = {m["mountPath"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
    assert "/tmp" in writable, name
    for c in spec["containers"]:
      context = c["securityContext"]
      assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"]
      assert context["capabilities"] == {"drop": ["ALL"]}
      assert set(c["resources"]) == {"requests", "limits"}
      assert re.fullmatch(r"impala-(learner|actor):\d+\.\d+\.\d+", c["image"]), c["image"]


def test_learner_probes_service_and_network_policy_agree_on_the_ports():
  docs = {(d["kind"], d["metadata"]["name"]): d for d in manifest()}
  learner = pod_specs(list(docs.values()))["impala-learner"]
  container = learner["containers"][0]
  ports = {p["name"]: p["containerPort"] for p in container["ports"]}
  port = ports["grpc"]
  settings = docs[("ConfigMap", "impala-config")]["data"]
  assert int(settings["IMPALA_PORT"]) == port
  assert int(settings["IMPALA_HEALTH_PORT"]) == ports["health"]  # plaintext even with TLS
  for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
    assert container[probe]["grpc"]["port"] == ports["health"], probe
  startup = container["startupProbe"]
  assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # imports + compilation
  assert {e["configMapRef"]["name"] for e in container["envFrom"]} == {"impala-config"}
  assert all(key.startswith("IMPALA_") for key in settings)
  service = docs[("Service", "impala-learner")]["spec"]
  policy = docs[("NetworkPolicy", "impala-learner")]["spec"]
  assert service["selector"] == policy["podSelector"]["matchLabels"]
  assert [p["port"] for p in policy["ingress"][0]["ports"]] == [port]
  actor_labels = docs[("Deployment", "impala-actors")]["spec"]["template"]["metadata"]["labels"]
  assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"].items() <= actor_labels.items()
  # Kubernetes waits longer than the learner needs to stop after SIGTERM.
  assert learner["terminationGracePeriodSeconds"] > 30


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_base_is_an_argument_and_entrypoint_exec_form(dockerfile):
  text = open(os.path.join(ROOT, dockerfile)).read()
  assert "ARG BASE_IMAGE=python:3.11-slim" in text
  assert re.search(r'^ENTRYPOINT \["python", "\w+\.py"\]$', text, re.M)
  assert re.search(r"^USER 10001:10001$", text, re.M)


def test_both_pods_expose_metrics_where_their_scrape_annotations_say():
  docs = manifest()
  settings = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
  for d in docs:
    if d["kind"] != "Deployment":
      continue
    template = d["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    container = template["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert int(env.get("IMPALA_METRICS_PORT", settings["IMPALA_METRICS_PORT"])) == ports["metrics"]
