"""slurm/impala.sbatch on a real one-node Slurm cluster that the fixture starts and stops
(slurm-wlm and munge from Debian). Its configuration lives
in a temporary folder (SLURM_CONF), so nothing under /etc/slurm is touched."""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT, free_ports, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

CONF = """\
ClusterName=impala-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ReturnToService=2
MinJobAge=3600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def _wait_until(check, seconds: float, what):
  """Polls check() until it holds; past the deadline, raises with what (or what())."""
  deadline = time.monotonic() + seconds
  while not check():
    if time.monotonic() > deadline:
      raise TimeoutError(what() if callable(what) else what)
    time.sleep(0.2)


def _munge_works() -> bool:
  return subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
  """A one-node cluster: munged (unless one runs), slurmctld and slurmd in the foreground;
  all that it started is stopped by PID at the end."""
  for tool in ("munged", "slurmctld", "slurmd", "sbatch"):
    require_tool(tool)
  if os.geteuid() != 0:
    pytest.skip("starting Slurm's daemons needs root")
  directory = tmp_path_factory.mktemp("slurm")
  for sub in ("state", "spool"):
    (directory / sub).mkdir()
  host = socket.gethostname().split(".")[0]
  ports = free_ports(2)  # slurmctld and slurmd: the same port makes slurmctld talk to itself
  conf = directory / "slurm.conf"
  conf.write_text(
    CONF.format(host=host, dir=directory, cpus=os.cpu_count(), ctld_port=ports[0], d_port=ports[1])
  )
  env = dict(os.environ, SLURM_CONF=str(conf))
  started = []
  try:
    if not _munge_works():
      if not pathlib.Path("/etc/munge/munge.key").exists():
        subprocess.run(["mungekey", "--create"], check=True)
      subprocess.run(
        "mkdir -p /run/munge && chown -R munge:munge /etc/munge /var/lib/munge "
        "/var/log/munge /run/munge",
        shell=True,
        check=True,
      )
      # setpriv drops to munge, not Popen(user=...): that makes Python fork() instead of
      # vfork(), and gRPC's fork handlers then restart its poller in the child, which
      # aborts when the child closes the poller's descriptors (seen in CI: munged never ran).
      log = directory / "munged.log"
      with open(log, "wb") as out:
        started.append(
          subprocess.Popen(
            [
              "setpriv",
              "--reuid=munge",
              "--regid=munge",
              "--init-groups",
              "/usr/sbin/munged",
              "--foreground",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
          )
        )
      _wait_until(_munge_works, 20, lambda: f"munged did not start: {log.read_text()!r}")
    for daemon in ("slurmctld", "slurmd"):
      started.append(
        subprocess.Popen(
          [daemon, "-D", "-f", str(conf)],
          env=env,
          stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL,
        )
      )
    _wait_until(
      lambda: (
        "idle"
        in subprocess.run(
          ["sinfo", "--noheader", "--format=%t"], env=env, capture_output=True, text=True
        ).stdout
      ),
      60,
      f"the node did not come up; see {directory}/slurmctld.log",
    )
    yield env
  finally:
    for process in reversed(started):
      process.terminate()
      try:
        process.wait(timeout=15)
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def job_field(env, job: str, name: str) -> str:
  shown = subprocess.run(
    ["scontrol", "show", "job", job], env=env, capture_output=True, text=True, check=True
  ).stdout
  return re.search(rf"\b{name}=(\S+)", shown).group(1)


def job_env(slurm: dict, logs) -> dict:
  """The environment of a job of 2 learners logging to `logs`, on free ports."""
  return dict(
    slurm,
    LEARNERS="2",
    PYTHON=sys.executable,
    LOGS=str(logs),
    **dict(zip(("PORT", "COORDINATOR_PORT"), map(str, free_ports(2)))),
  )


def test_sbatch_runs_two_learners_and_two_actors_to_a_clean_end(slurm, tmp_path):
  logs = tmp_path / "logs"
  env = job_env(slurm, logs)
  submitted = subprocess.run(
    [
      "sbatch",
      "--parsable",
      "--ntasks=4",
      "--overcommit",
      "--time=6",
      f"--output={tmp_path}/job.out",
      "slurm/impala.sbatch",
      "--max-frames",
      "260000",
      "--log-every",
      "2",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=30,
  )
  assert submitted.returncode == 0, submitted.stderr
  job = submitted.stdout.strip().split(";")[0]
  try:
    _wait_until(
      lambda: job_field(env, job, "JobState") not in ("PENDING", "RUNNING", "COMPLETING"),
      330,
      f"job {job} still running",
    )
  except TimeoutError:
    subprocess.run(["scancel", job], env=env)
    raise
  out = (tmp_path / "job.out").read_text()
  assert job_field(env, job, "JobState") == "COMPLETED", out
  assert job_field(env, job, "ExitCode") == "0:0", out
  assert "learners exited with status 0" in out

  summaries = []
  for i in range(2):
    stdout = (logs / f"impala-{job}-learner-{i}.out").read_text()
    summaries.append(json.loads(stdout.strip().splitlines()[-1]))
    assert f"learner {i} of 2" in (logs / f"impala-{job}-learner-{i}.err").read_text()
  assert [s["learner"] for s in summaries] == [0, 1]
  assert all(s["stop_reason"] == "max_frames" and s["updates"] >= 50 for s in summaries)
  assert summaries[0]["version"] == summaries[1]["version"]
  assert summaries[0]["params_sha256"] == summaries[1]["params_sha256"]
  # Learner 0 spread the two actors over both learners.
  assert all(len(s["unrolls_by_actor"]) == 1 for s in summaries), summaries
  assert len(list(logs.glob(f"impala-{job}-actor-*.out"))) == 2


def test_scancel_stops_the_learners_together_with_a_checkpoint(slurm, tmp_path):
  logs, checkpoints = tmp_path / "logs", tmp_path / "checkpoints"
  env = job_env(slurm, logs)
  job = (
    subprocess.run(
      [
        "sbatch",
        "--parsable",
        "--ntasks=3",
        "--overcommit",
        "--time=6",
        f"--output={tmp_path}/job.out",
        "slurm/impala.sbatch",
        "--log-every",
        "1",
        "--checkpoint-dir",
        str(checkpoints),
      ],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=30,
      check=True,
    )
    .stdout.strip()
    .split(";")[0]
  )
  try:
    learner_1 = logs / f"impala-{job}-learner-1.err"
    _wait_until(
      lambda: learner_1.exists() and "updates" in learner_1.read_text(),
      180,
      "learner 1 made no progress",
    )
  finally:
    subprocess.run(["scancel", job], env=env, check=True)
  _wait_until(
    lambda: job_field(env, job, "JobState") not in ("RUNNING", "COMPLETING"),
    60,
    f"job {job} did not end",
  )
  summaries = [
    json.loads((logs / f"impala-{job}-learner-{i}.out").read_text().splitlines()[-1])
    for i in range(2)
  ]
  assert [s["stop_reason"] for s in summaries] == ["terminated", "terminated"]
  assert summaries[0]["version"] == summaries[1]["version"]
  assert summaries[0]["checkpoint"].startswith(str(checkpoints))  # learner 0 writes them
  assert summaries[1]["checkpoint"] is None
