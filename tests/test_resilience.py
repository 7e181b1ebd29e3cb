"""Breaking things on purpose, with the real programs as subprocesses: actors killed with
SIGKILL mid-stream, a learner killed with SIGKILL and restarted on its checkpoints, and
SIGTERM's clean stop with a final checkpoint."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from conftest import ROOT, free_port
from impala import checkpoint


def start(script: str, *args: str, **env) -> subprocess.Popen:
  """A learner (output piped, to be read) or an actor (output dropped: nobody reads it)."""
  out = subprocess.PIPE if script == "learner_server.py" else subprocess.DEVNULL
  return subprocess.Popen([sys.executable, script, *args], cwd=ROOT, text=True,
                          env=dict(os.environ, **env), stdout=out, stderr=out)


def read_until(proc: subprocess.Popen, pattern: str, timeout: float = 120.0) -> re.Match:
  """Reads the process's stderr line by line until `pattern` matches (or fails)."""
  deadline = time.monotonic() + timeout
  seen = []
  for line in proc.stderr:
    seen.append(line)
    match = re.search(pattern, line)
    if match:
      return match
    assert time.monotonic() < deadline, f"no {pattern!r} in {timeout} s:\n{''.join(seen[-20:])}"
  raise AssertionError(f"stderr ended before {pattern!r}:\n{''.join(seen[-20:])}")


def stop_all(*procs: subprocess.Popen):
  for p in procs:
    if p.poll() is None:
      p.kill()
    p.communicate()


def test_actors_killed_mid_stream_do_not_disturb_the_learner_or_other_actors():
  port = str(free_port())
  learner = start("learner_server.py", "--port", port, "--log-every", "0.5")
  steady = start("actor_client.py", GRPC_HOST=f"localhost:{port}", IMPALA_ACTOR_ID="steady")
  victims = []
  try:
    read_until(learner, "actor steady connected")
    updates = []
    for round_ in range(5):
      victim = start("actor_client.py", GRPC_HOST=f"localhost:{port}",
                     IMPALA_ACTOR_ID=f"victim-{round_}")
      victims.append(victim)
      read_until(learner, f"actor victim-{round_} connected")
      read_until(learner, r"actors 2 ")  # a progress line while both stream
      victim.send_signal(signal.SIGKILL)
      victim.wait(timeout=10)
      updates.append(int(read_until(learner, r"updates\s+([\d,]+)").group(1).replace(",", "")))
    assert updates == sorted(updates) and updates[-1] > updates[0]  # training went on
    assert steady.poll() is None and learner.poll() is None
    learner.send_signal(signal.SIGTERM)
    stdout, stderr = learner.communicate(timeout=30)
    assert learner.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "Exception" not in stderr, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    unrolls = summary["unrolls"]
    assert unrolls["received"] == (unrolls["accepted"] + unrolls["duplicates"] + unrolls["stale"]
                                   + sum(unrolls["rejected"].values()) + unrolls["abandoned"])
    assert unrolls["rejected"] == {} and summary["unrolls_by_actor"]["steady"] > 0
  finally:
    stop_all(learner, steady, *victims)


def test_learner_killed_and_restarted_resumes_and_its_actors_come_back(tmp_path):
  port = str(free_port())
  common = ["--port", port, "--checkpoint-dir", str(tmp_path), "--checkpoint-every", "1",
            "--log-every", "0.5", "--seed", "3"]
  learner = start("learner_server.py", *common)
  actors = [start("actor_client.py", GRPC_HOST=f"localhost:{port}", IMPALA_ACTOR_ID=f"a{i}")
            for i in range(2)]
  restarted = None
  try:
    read_until(learner, r"updates\s+[1-9]")
    deadline = time.monotonic() + 60
    while not checkpoint.checkpoints(str(tmp_path)):
      assert time.monotonic() < deadline, "no checkpoint written"
      time.sleep(0.2)  # polling for a file, with a deadline
    learner.send_signal(signal.SIGKILL)
    learner.wait(timeout=10)
    saved = max(int(re.search(r"(\d+)", os.path.basename(p)).group(1))
                for p in checkpoint.checkpoints(str(tmp_path)))
    assert saved > 0

    started = time.monotonic()
    restarted = start("learner_server.py", *common, "--stop-at-return", "475",
                      "--max-seconds", "150")
    resumed = int(read_until(restarted, r"resumed from .*: update ([\d,]+)").group(1).replace(",", ""))
    assert resumed == saved
    for _ in actors:  # the same processes, not restarted
      read_until(restarted, r"actor a\d connected")
    reconnect_seconds = time.monotonic() - started
    stdout, stderr = restarted.communicate(timeout=180)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert restarted.returncode == 0 and summary["reached_target"], stderr[-3000:]
    assert summary["updates"] > resumed and set(summary["unrolls_by_actor"]) == {"a0", "a1"}
    assert all(a.poll() is None for a in actors)  # they outlived two learners
    print(f"restart to both actors reconnected: {reconnect_seconds:.1f} s")
    for a in actors:
      a.send_signal(signal.SIGTERM)
    assert [a.wait(timeout=30) for a in actors] == [0, 0]
  finally:
    stop_all(learner, *actors, *([restarted] if restarted else []))


def test_sigterm_writes_a_final_checkpoint_and_exits_0(tmp_path):
  learner = start("learner_server.py", "--port", str(free_port()), "--local-actors", "1",
                  "--checkpoint-dir", str(tmp_path), "--log-every", "0.5")
  try:
    read_until(learner, r"updates\s+[1-9]")
    learner.send_signal(signal.SIGTERM)
    started = time.monotonic()
    stdout, stderr = learner.communicate(timeout=30)
    assert time.monotonic() - started < 15  # impala.yml allows 60
  finally:
    stop_all(learner)
  assert learner.returncode == 0, stderr[-3000:]
  summary = json.loads(stdout.strip().splitlines()[-1])
  assert summary["stop_reason"] == "terminated"
  assert checkpoint.checkpoints(str(tmp_path)) == [summary["checkpoint"]]
  assert f"{summary['updates']:012d}" in summary["checkpoint"]  # written after the last update


def resident_bytes(pid: int) -> int:
  with open(f"/proc/{pid}/status") as f:
    return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


def test_32_synthetic_actors_at_full_speed_counters_add_up_and_memory_stays_flat():
  port, streams, seconds = str(free_port()), 32, 30
  learner = start("learner_server.py", "--port", port, "--log-every", "1")
  load = None
  try:
    read_until(learner, "learner serving on port")
    load = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "synthetic_actors.py"),
                             f"localhost:{port}", str(streams), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    for _ in range(5):  # warmed up: five progress lines with every stream being served
      read_until(learner, rf"actors {streams} ")
    warm = resident_bytes(learner.pid)
    results = json.loads(load.communicate(timeout=seconds + 60)[0])
    final = resident_bytes(learner.pid)
    learner.send_signal(signal.SIGTERM)
    stdout, stderr = learner.communicate(timeout=30)
  finally:
    stop_all(learner, *([load] if load else []))
  assert [r["error"] for r in results] == [None] * streams
  assert all(r["sent"] == r["answered"] > 0 for r in results)  # every unroll was answered
  unrolls = json.loads(stdout.strip().splitlines()[-1])["unrolls"]
  assert unrolls["received"] == sum(r["sent"] for r in results) == (
      unrolls["accepted"] + unrolls["duplicates"] + unrolls["stale"]
      + sum(unrolls["rejected"].values()) + unrolls["abandoned"])
  assert unrolls["duplicates"] == 0 and unrolls["rejected"] == {}
  assert abs(final - warm) <= 0.2 * warm, (warm, final)
  print(f"load: {streams} streams, {seconds} s, {unrolls['accepted'] / seconds:.0f} unrolls/s; "
        f"learner RSS {warm / 2**20:.0f} MiB after warm-up, {final / 2**20:.0f} MiB at the end")
