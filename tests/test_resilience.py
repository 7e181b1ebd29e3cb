"""Breaking things on purpose, with the real programs as subprocesses: actors killed with
SIGKILL mid-stream, a learner killed with SIGKILL and restarted on its checkpoints, and
SIGTERM's clean stop with a final checkpoint."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, assert_accounted, free_port, read_until, start, stop_all

from impala import checkpoint

pytestmark = pytest.mark.slow


def test_actors_killed_mid_stream_do_not_disturb_the_learner_or_other_actors():
  port = str(free_port())
  learner = start("learner_server.py", "--port", port, "--log-every", "0.5")
  steady = start("actor_client.py", GRPC_HOST=f"localhost:{port}", IMPALA_ACTOR_ID="steady")
  victims = []
  try:
    read_until(learner, "actor steady connected")
    updates = []
    for round_ in range(5):
      victim = start(
        "actor_client.py", GRPC_HOST=f"localhost:{port}", IMPALA_ACTOR_ID=f"victim-{round_}"
      )
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
    assert_accounted(summary)
    assert summary["rejected"] == {} and summary["unrolls_by_actor"]["steady"] > 0
  finally:
    stop_all(learner, steady, *victims)


def newest_checkpoint(directory) -> int:
  """The update count of the newest checkpoint in `directory` (0: none)."""
  paths = checkpoint.checkpoints(str(directory))
  return checkpoint.record_of(paths[-1])["updates"] if paths else 0


def test_learner_killed_and_restarted_resumes_and_its_actors_come_back(tmp_path):
  """Three SIGKILLs of the learner, each followed by a restart on the same checkpoint
  folder; the same two actor processes serve all four learners, the last of which
  trains on to the CartPole target."""
  port = str(free_port())
  common = [
    "--port",
    port,
    "--checkpoint-dir",
    str(tmp_path),
    "--checkpoint-every",
    "1",
    "--log-every",
    "0.5",
    "--seed",
    "3",
  ]
  actors = [
    start("actor_client.py", GRPC_HOST=f"localhost:{port}", IMPALA_ACTOR_ID=f"a{i}")
    for i in range(2)
  ]
  learners, saved, reconnect_seconds = [], 0, []
  try:
    for cycle in range(4):
      started = time.monotonic()
      last = cycle == 3
      learners.append(
        start(
          "learner_server.py",
          *common,
          *(["--stop-at-return", "475", "--max-seconds", "150"] if last else []),
        )
      )
      learner = learners[-1]
      if cycle:
        resumed = read_until(learner, r"resumed from .*: update ([\d,]+)").group(1)
        assert int(resumed.replace(",", "")) == saved  # not 0: where the last one stopped
      for _ in actors:  # the same processes, never restarted
        read_until(learner, r"actor a\d connected")
      if cycle:
        reconnect_seconds.append(round(time.monotonic() - started, 1))
      if last:
        break
      deadline = time.monotonic() + 60
      while newest_checkpoint(tmp_path) <= saved:  # a checkpoint past the one it resumed from
        assert time.monotonic() < deadline, "no new checkpoint"
        time.sleep(0.2)  # polling for a file, with a deadline
      learner.send_signal(signal.SIGKILL)
      learner.wait(timeout=10)
      saved = newest_checkpoint(tmp_path)
    stdout, stderr = learner.communicate(timeout=180)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert learner.returncode == 0 and summary["reached_target"], stderr[-3000:]
    assert summary["updates"] > saved and set(summary["unrolls_by_actor"]) == {"a0", "a1"}
    print(f"learner restart to both actors reconnected, 3 cycles: {reconnect_seconds} s")
    # They outlived four learners, and stop by themselves once the run has reached its target.
    assert [a.wait(timeout=30) for a in actors] == [0, 0]
  finally:
    stop_all(*learners, *actors)


def test_sigterm_writes_a_final_checkpoint_and_exits_0(tmp_path):
  learner = start(
    "learner_server.py",
    "--port",
    str(free_port()),
    "--local-actors",
    "1",
    "--checkpoint-dir",
    str(tmp_path),
    "--log-every",
    "0.5",
  )
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
    load = subprocess.Popen(
      [
        sys.executable,
        "-m",
        "benchmarks.synthetic_actors",
        f"localhost:{port}",
        str(streams),
        str(seconds),
      ],
      cwd=ROOT,
      stdout=subprocess.PIPE,
      text=True,
    )
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
  unrolls = json.loads(stdout.strip().splitlines()[-1])
  assert unrolls["received"] == sum(r["sent"] for r in results)
  assert_accounted(unrolls)
  assert unrolls["duplicates"] == 0 and unrolls["rejected"] == {}
  assert final <= 1.2 * warm, (warm, final)  # no growth (it may shrink as warm-up's is freed)
  print(
    f"load: {streams} streams, {seconds} s, {unrolls['accepted'] / seconds:.0f} unrolls/s; "
    f"learner RSS {warm / 2**20:.0f} MiB after warm-up, {final / 2**20:.0f} MiB at the end"
  )


def test_max_seconds_and_progress_records_keep_their_clock_through_long_updates(tmp_path):
  """A big MLP on 1,024 environments a batch: compiling the update and each update take
  seconds. The run still stops within a few seconds of --max-seconds, and a progress
  record comes every second meanwhile, saying what the learner waits for."""
  limit = 20
  args = ["--local-actors", "1", "--hidden-sizes", "1024,1024", "--num-envs", "64"]
  args += ["--batch-size", "16", "--max-seconds", str(limit), "--log-every", "1"]
  started = time.monotonic()
  learner = start(
    "learner_server.py",
    *args,
    "--port",
    str(free_port()),
    "--logdir",
    str(tmp_path),
    IMPALA_KEEPALIVE_SECONDS="2",  # actors ping through the long silences
  )
  out, err = learner.communicate(timeout=limit + 60)
  wall = time.monotonic() - started
  summary = json.loads(out.strip().splitlines()[-1])
  assert learner.returncode == 0 and summary["stop_reason"] == "max_seconds", err[-2000:]
  assert wall < limit + 15, wall  # GRACE, stopping the actor and the server: a few seconds
  records = [json.loads(line) for line in open(tmp_path / "progress.jsonl")]
  gaps = [b["seconds"] - a["seconds"] for a, b in zip(records, records[1:-1])]  # not the stop's
  assert len(records) >= limit - 8 and max(gaps) < 2.5, gaps
  held = {r["waiting_for"] for r in records if not r["updates_per_second"]}
  assert held & {"compiling", "the update"}, held  # the clock reported while an update held on
  assert "too_many_pings" not in err and "retrying with backoff" not in err  # no reconnect
  assert_accounted(summary)
