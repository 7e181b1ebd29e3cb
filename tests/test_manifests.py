"""Static checks of the Dockerfiles, the Kubernetes manifest and its kustomize overlays:
the linters (kubernetes-validate strict, checkov, hadolint), and the properties of
impala.yml and the overlays that the linters do not know about."""

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


# kustomization folder -> what it is; the ones under deploy/ read ../../impala.yml, which
# kustomize allows only with --load-restrictor LoadRestrictionsNone.
OVERLAYS = {
  ".": "local images",
  "deploy/learners": "several learners",
  "deploy/gke": "Google Kubernetes Engine",
}


def rendered_overlay(folder: str = ".") -> str:
  result = run(
    require_tool("kubectl"), "kustomize", "--load-restrictor", "LoadRestrictionsNone", folder
  )
  assert result.returncode == 0, result.stderr
  return result.stdout


def rendered(folder: str) -> dict[tuple[str, str], dict]:
  """(kind, name) -> document of the rendered overlay."""
  return {
    (d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered_overlay(folder))
  }


def pod_specs(docs: list[dict]) -> dict[str, dict]:
  return {
    d["metadata"]["name"]: d["spec"]["template"]["spec"]
    for d in docs
    if d["kind"] in ("Deployment", "StatefulSet")
  }


@pytest.fixture(scope="module")
def overlay_files(tmp_path_factory) -> list[str]:
  """Every overlay, rendered into a file (the linters read files)."""
  folder = tmp_path_factory.mktemp("overlays")
  files = []
  for overlay in OVERLAYS:
    path = folder / (overlay.replace("/", "-").strip(".") or "local")
    path = path.with_suffix(".yml")
    path.write_text(rendered_overlay(overlay))
    files.append(str(path))
  return files


def test_kubernetes_validate_strict_on_manifest_and_overlays(overlay_files):
  result = run(
    require_tool("kubernetes-validate"),
    "--strict",
    "-k",
    KUBERNETES_VERSION,
    "impala.yml",
    *overlay_files,
  )
  assert result.returncode == 0, result.stdout + result.stderr
  documents = sum(len(list(yaml.safe_load_all(open(f)))) for f in overlay_files)
  assert result.stdout.count("passed") == len(manifest()) + documents


def test_checkov_reports_no_failed_check(overlay_files):
  files = ["impala.yml", *overlay_files, *DOCKERFILES]
  result = run(
    require_tool("checkov"),
    "--compact",
    "--quiet",
    "--skip-download",
    *[arg for f in files for arg in ("-f", f)],
  )
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
  assert {c["image"] for c in containers} == {
    "localhost/impala-learner:0.1.0",
    "localhost/impala-actor:0.1.0",
  }
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
  assert (
    policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"].items() <= actor_labels.items()
  )
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


def test_learners_overlay_is_a_statefulset_of_k_learners_that_find_learner_0():
  docs = rendered("deploy/learners")
  assert ("Deployment", "impala-learner") not in docs
  assert ("PersistentVolumeClaim", "impala-checkpoints") not in docs
  learners = docs[("StatefulSet", "impala-learner")]["spec"]
  settings = docs[("ConfigMap", "impala-config")]["data"]
  assert learners["replicas"] == int(settings["IMPALA_NUM_LEARNERS"]) == 2
  assert learners["podManagementPolicy"] == "Parallel"  # the JAX job waits for all K
  headless = docs[("Service", learners["serviceName"])]["spec"]
  assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
  # The coordinator is learner 0's stable name, on the port its container declares.
  container = learners["template"]["spec"]["containers"][0]
  ports = {p["name"]: p["containerPort"] for p in container["ports"]}
  assert settings["IMPALA_COORDINATOR_ADDRESS"] == (
    f"impala-learner-0.{learners['serviceName']}:{ports['coordinator']}"
  )
  env = {e["name"]: e for e in container["env"]}
  assert env["IMPALA_LEARNER_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
    "metadata.labels['apps.kubernetes.io/pod-index']"
  )
  assert env["IMPALA_ADVERTISE_ADDRESS"]["value"] == (
    f"$(POD_NAME).{learners['serviceName']}:{ports['grpc']}"
  )
  assert [v["metadata"]["name"] for v in learners["volumeClaimTemplates"]] == ["checkpoints"]
  # Actors, unchanged, are given learner 0 alone (which assigns them to the learners).
  assert (
    docs[("Service", "impala-learner")]["spec"]["selector"]["statefulset.kubernetes.io/pod-name"]
    == "impala-learner-0"
  )
  assert docs[("Deployment", "impala-actors")] == next(
    d for d in manifest() if d["metadata"]["name"] == "impala-actors"
  )
  policy = docs[("NetworkPolicy", "impala-learner")]["spec"]["ingress"]
  assert {"from": [{"podSelector": {"matchLabels": learners["selector"]["matchLabels"]}}]} in policy


def test_gke_overlay_puts_learners_on_gpus_and_actors_on_spot_vms():
  docs = rendered("deploy/gke")
  learner = docs[("StatefulSet", "impala-learner")]["spec"]
  pod = learner["template"]["spec"]
  assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
  gpu_taint = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
  assert gpu_taint in pod["tolerations"]
  container = pod["containers"][0]
  assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
  assert container["image"].endswith(":0.1.0-cuda12")
  assert learner["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "standard-rwo"
  actors = docs[("Deployment", "impala-actors")]["spec"]["template"]["spec"]
  assert actors["nodeSelector"] == {"cloud.google.com/gke-spot": "true"}
  assert actors["terminationGracePeriodSeconds"] <= 30  # Spot VMs give 30 s notice
  text = open(os.path.join(ROOT, "Dockerfile.learner")).read()
  assert 'ARG JAX_EXTRA=""' in text and '${JAX_EXTRA:+"jax[${JAX_EXTRA}]"}' in text
