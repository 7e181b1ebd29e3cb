"""The real images and the real manifest, run with podman (Docker's CLI twin).

Images are built from Dockerfile.learner and Dockerfile.actor. No registry is reachable
here, so the base image is a stand-in made with debootstrap from Debian's packages
(Debian 12's Python is 3.11, as in the default python:3.11-slim); that is the one
substitution in the build. Under CI (CI=true) these tests fail instead of skipping when
podman is missing.
"""

import json
import os
import re
import subprocess
import time
import uuid

import pytest
import yaml
from conftest import ROOT, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.containers]

BASE = "localhost/impala-test-base:bookworm"
IMAGES = {
  "learner": "localhost/impala-learner:0.1.0",
  "actor": "localhost/impala-actor:0.1.0",
  "actor-slim": "localhost/impala-actor-slim:0.1.0",  # for learner-side inference: no JAX
}
BUILD_ARGS = {"actor-slim": ["--build-arg", "REQUIREMENTS=requirements-actor.txt"]}
MAX_IMAGE_BYTES = 1.5e9
MAX_SLIM_BYTES = 450e6
MIN_UPDATES = 50
TRAIN_TIMEOUT = 240.0
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def podman(*args: str, check: bool = True, timeout: float = 600) -> str:
  result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
  if check and result.returncode != 0:
    raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stderr[-3000:]}")
  return result.stdout


def logs(container: str) -> str:
  """Everything the container wrote (podman logs splits it again into stdout and stderr)."""
  return subprocess.run(
    ["podman", "logs", container],
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    timeout=60,
  ).stdout


def debian_mirror() -> str:
  """The Debian mirror this machine's apt uses (debootstrap needs one)."""
  for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
    if os.path.exists(path):
      match = re.search(r"^(?:URIs:|deb)\s+(\S+/debian)\b", open(path).read(), re.M)
      if match:
        return match.group(1)
  pytest.fail("no Debian mirror in /etc/apt: cannot debootstrap the stand-in base image")


def make_base_image(tmp_path):
  """Debian 12 minbase with python3, venv and CA certificates, imported into podman."""
  if subprocess.run(["podman", "image", "exists", BASE]).returncode == 0:
    return
  rootfs = tmp_path / "rootfs"
  subprocess.run(
    [
      require_tool("debootstrap"),
      "--variant=minbase",
      "--include=python3,python3-venv,ca-certificates",
      "bookworm",
      str(rootfs),
      debian_mirror(),
    ],
    check=True,
    capture_output=True,
    timeout=900,
  )
  tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
  subprocess.run(
    [
      "podman",
      "import",
      "--change",
      "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "-",
      BASE,
    ],
    stdin=tar.stdout,
    check=True,
    capture_output=True,
    timeout=300,
  )
  assert tar.wait() == 0


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  """The images, built as the README says (plus the stand-in base and, where the host
  reaches PyPI through a TLS proxy, its CA certificate for pip)."""
  require_tool("podman")
  tmp = tmp_path_factory.mktemp("images")
  make_base_image(tmp)
  mounts = []
  if os.path.exists(HOST_CA):
    (tmp / "pip.conf").write_text("[global]\ncert = /host-ca.crt\n")
    mounts = ["-v", f"{tmp / 'pip.conf'}:/etc/pip.conf:ro", "-v", f"{HOST_CA}:/host-ca.crt:ro"]
  for role, tag in IMAGES.items():
    podman(
      "build",
      "--format",
      "docker",
      *mounts,
      "--build-arg",
      f"BASE_IMAGE={BASE}",
      *BUILD_ARGS.get(role, []),
      "-f",
      os.path.join(ROOT, f"Dockerfile.{role.split('-')[0]}"),
      "-t",
      tag,
      ROOT,
      timeout=1200,
    )
  return IMAGES


@pytest.fixture
def network():
  """A podman network of this test's own; removed with everything on it afterwards."""
  name = f"impala-test-{uuid.uuid4().hex[:8]}"
  podman("network", "create", name)
  yield name
  for container in podman("ps", "-a", "--filter", f"network={name}", "-q").split():
    podman("rm", "--force", "--volumes", "--time", "0", container, check=False)
  podman("network", "rm", "--force", name, check=False)


def wait_for_training(container: str, actors: int) -> dict:
  """Follows the learner's progress lines until it has made MIN_UPDATES updates with
  `actors` actors connected; returns the last line's figures."""
  deadline = time.monotonic() + TRAIN_TIMEOUT
  pattern = re.compile(r"updates\s+([\d,]+).*\bactors (\d+)")
  last = None
  while time.monotonic() < deadline:
    state = podman("inspect", container, "--format", "{{.State.Status}}").strip()
    assert state == "running", logs(container)[-3000:]
    matches = pattern.findall(logs(container))
    if matches:
      last = dict(updates=int(matches[-1][0].replace(",", "")), actors=int(matches[-1][1]))
      if last["updates"] >= MIN_UPDATES and last["actors"] >= actors:
        return last
    time.sleep(1.0)  # polling the log for a condition, with a deadline
  raise AssertionError(
    f"no {MIN_UPDATES} updates with {actors} actors in {TRAIN_TIMEOUT} s: "
    f"{last}\n{logs(container)[-3000:]}"
  )


def start_learner(images, network: str, *env: str) -> str:
  """The learner container on `network`, with progress lines every second; its name."""
  learner = f"{network}-learner"
  settings = [arg for setting in ("IMPALA_LOG_EVERY=1", *env) for arg in ("--env", setting)]
  podman("run", "--detach", "--name", learner, "--network", network, *settings, images["learner"])
  return learner


def test_images_are_small_non_root_and_exec_form(images):
  for role, tag in images.items():
    info = json.loads(podman("image", "inspect", tag))[0]
    assert info["Size"] <= (MAX_SLIM_BYTES if role == "actor-slim" else MAX_IMAGE_BYTES), (
      role,
      info["Size"],
    )
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == [
      "python",
      "learner_server.py" if role == "learner" else "actor_client.py",
    ]
    # No pip (nor a compiler) in the final image: the venv was built in another stage.
    found = podman(
      "run", "--rm", "--entrypoint", "sh", tag, "-c", "command -v pip pip3 gcc cc || true"
    )
    assert found.strip() == "", found
  assert "impala.healthcheck" in " ".join(
    json.loads(podman("image", "inspect", images["learner"]))[0]["Healthcheck"]["Test"]
  )


def test_learner_and_two_actors_train_in_containers_on_a_network(images, network):
  """Containers on one network: actors find the learner by name."""
  learner = start_learner(images, network)
  actors = [
    podman(
      "run",
      "--detach",
      "--network",
      network,
      "--env",
      f"GRPC_HOST={learner}:50051",
      images["actor"],
    ).strip()
    for _ in range(2)
  ]
  wait_for_training(learner, actors=2)
  health = subprocess.run(
    ["podman", "healthcheck", "run", learner], capture_output=True, text=True, timeout=60
  )
  assert health.returncode == 0, health.stdout + health.stderr  # the health service said SERVING

  started = time.monotonic()
  podman("stop", "--time", "30", learner)  # SIGTERM, then SIGKILL after 30 s
  assert time.monotonic() - started < 30
  assert podman("inspect", learner, "--format", "{{.State.ExitCode}}").strip() == "0"
  summary = json.loads([line for line in logs(learner).splitlines() if line.startswith("{")][-1])
  assert summary["stop_reason"] == "terminated" and summary["updates"] >= MIN_UPDATES
  assert summary["checkpoint"].startswith("/var/lib/impala/")  # the final one, on SIGTERM
  hostnames = {podman("inspect", a, "--format", "{{.Config.Hostname}}").strip() for a in actors}
  senders = {actor_id.rsplit("-", 1)[0] for actor_id in summary["unrolls_by_actor"]}
  assert senders == hostnames, summary  # trajectories came from both actors


def test_the_slim_actor_acts_for_a_learner_with_learner_side_inference(images, network):
  """The actor image without JAX (requirements-actor.txt) against the learner image, which
  runs the policy for it (--inference learner)."""
  learner = start_learner(images, network, "IMPALA_INFERENCE=learner")
  actor = podman(
    "run",
    "--detach",
    "--network",
    network,
    *("--env", f"GRPC_HOST={learner}:50051"),
    images["actor-slim"],
  ).strip()
  found = podman("run", "--rm", "--entrypoint", "python", images["actor-slim"], "-c", NO_JAX)
  assert found.strip() == "no jax", found
  wait_for_training(learner, actors=1)
  podman("stop", "--time", "30", learner)
  summary = json.loads([line for line in logs(learner).splitlines() if line.startswith("{")][-1])
  assert summary["updates"] >= MIN_UPDATES and summary["rejected"] == {}
  hostname = podman("inspect", actor, "--format", "{{.Config.Hostname}}").strip()
  assert {a.rsplit("-", 1)[0] for a in summary["unrolls_by_actor"]} == {hostname}, summary
  assert "sending observations (learner-side inference)" in logs(actor)


NO_JAX = "import importlib.util as u; print('no jax' if u.find_spec('jax') is None else 'jax')"


def test_the_manifest_trains_with_podman_kube_play(images, network, tmp_path):
  """The local overlay of impala.yml, run by `podman kube play`.

  Emulated: podman ignores Services, so the learner pod gets the Service's name as a
  network alias: as the README shows, everything but the actors' Deployment is played
  with that alias, the actors without it. And podman 4.3 publishes every containerPort
  on the host (Kubernetes opens nothing for them), where two actors' metrics ports would
  clash: the copy played has no `ports`. Otherwise it is the rendered manifest as it is.
  """
  rendered = subprocess.run(
    [require_tool("kubectl"), "kustomize", ROOT],
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  ).stdout
  docs = list(yaml.safe_load_all(rendered))
  service = next(d for d in docs if d["kind"] == "Service")["metadata"]["name"]
  deployments = {
    d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d
    for d in docs
    if d["kind"] == "Deployment"
  }
  actor_docs = [deployments["actor"]]
  learner_docs = [d for d in docs if d not in actor_docs]  # as README splits it
  for d in deployments.values():  # podman publishes containerPorts on the host: 2 actors clash
    for container in d["spec"]["template"]["spec"]["containers"]:
      container.pop("ports", None)
  replicas = deployments["actor"]["spec"]["replicas"]
  assert replicas >= 2
  files = {}
  for name, part in (("learner", learner_docs), ("actors", actor_docs)):
    files[name] = tmp_path / f"{name}.yml"
    files[name].write_text(yaml.safe_dump_all(part))
  # What kube play makes of claims and Secrets outlives `kube down`: removed before (left
  # over from an interrupted run, it would stop `kube play`) and after.
  made = [("volume", d["metadata"]["name"]) for d in docs if d["kind"] == "PersistentVolumeClaim"]
  made += [
    (kind, d["metadata"]["name"])
    for d in docs
    if d["kind"] == "Secret"
    for kind in ("secret", "volume")
  ]  # podman 4.3 mounts a Secret as a volume
  for kind, name in made:
    podman(kind, "rm", name, check=False)
  try:
    podman("kube", "play", "--network", f"{network}:alias={service}", str(files["learner"]))
    podman("kube", "play", "--network", network, str(files["actors"]))
    # kube play names containers <deployment>-pod-<replica>-<container>
    running = podman("ps", "--format", "{{.Names}}").split()
    pods = {
      role: [n for n in running if n.startswith(d["metadata"]["name"] + "-pod-")]
      for role, d in deployments.items()
    }
    (learner,) = pods["learner"]
    actors = pods["actor"]
    assert len(actors) == replicas, running
    user, read_only = podman(
      "inspect", learner, "--format", "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}"
    ).split()
    assert user.split(":")[0] == "10001" and read_only == "true"  # the manifest's securityContext
    wait_for_training(learner, actors=replicas)
    podman("stop", "--time", "30", learner)
    summary = json.loads([line for line in logs(learner).splitlines() if line.startswith("{")][-1])
    assert summary["checkpoint"].startswith("/var/lib/impala/")  # on the claim's volume
  finally:
    for name in ("actors", "learner"):
      podman("kube", "down", str(files[name]), check=False)
    for kind, name in made:
      podman(kind, "rm", name, check=False)
