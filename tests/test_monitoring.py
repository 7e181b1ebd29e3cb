"""What a run shows: /metrics scraped from a running learner and actor, TensorBoard
events read back, the plot command's PNG, the console's two modes, and the evaluation
of a trained and of a fresh checkpoint. One real CartPole run (the README's main
command, with every output switched on) feeds most of them."""

import contextlib
import io
import json
import shutil
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from conftest import ROOT, free_port
from prometheus_client.parser import text_string_to_metric_families

from impala import checkpoint, cli, evaluate, metrics, plot, progress
from impala import learner as learner_lib
from impala.actor import Session
from impala.config import Config, files
from impala.learner import COUNTERS, program, saving


def scrape(port: int) -> dict:
  """{sample name with labels: value} of http://127.0.0.1:port/metrics, parsed by prometheus-client."""
  with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
    text = response.read().decode()
  return {
    (s.name, tuple(sorted(s.labels.items()))): s.value
    for family in text_string_to_metric_families(text)
    for s in family.samples
  }


def value(samples: dict, name: str, **labels) -> float:
  return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A CartPole run with metrics, in a run directory, to a training mean of 490 (at 475
  the averaged parameters evaluate at 448-500 over runs, at 490 at 492-500); /metrics is
  scraped at the first two progress lines after frames arrive."""
  d = tmp_path_factory.mktemp("run")
  metrics_port = free_port()
  proc = subprocess.Popen(
    [
      sys.executable,
      "learner_server.py",
      "--local-actors",
      "2",
      "--stop-at-return",
      "490",
      "--max-seconds",
      "150",
      "--port",
      str(free_port()),
      "--metrics-port",
      str(metrics_port),
      "--run-dir",
      str(d / "run"),
      "--log-every",
      "0.5",
    ],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  scrapes, lines = [], []
  try:
    for line in proc.stderr:
      lines.append(line)
      if line.startswith("[") and len(scrapes) < 2:  # a progress line: it is training
        samples = scrape(metrics_port)
        if value(samples, "impala_frames_total") > 0:  # past the actors' first compile
          scrapes.append(samples)
    stdout = proc.stdout.read()
    proc.wait(timeout=30)
  finally:
    proc.kill()
  assert proc.returncode == 0, "".join(lines[-20:])
  return dict(
    dir=d, scrapes=scrapes, summary=json.loads(stdout.strip().splitlines()[-1]), stderr=lines
  )


@pytest.mark.slow
def test_learner_metrics_exist_and_move(run):
  first, second = run["scrapes"]
  assert value(second, "impala_frames_total") > value(first, "impala_frames_total") > 0
  assert value(second, "impala_updates_total") > value(first, "impala_updates_total")
  assert value(second, "impala_accepted_total") > 0
  assert value(second, "impala_received_total") >= value(second, "impala_accepted_total")
  assert value(second, "impala_actors_connected") == 2
  for gauge in (
    "impala_return_mean_100",
    "impala_learner_return_mean_100",
    "impala_policy_lag",
    "impala_queue_depth",
    "impala_version",
  ):
    assert (gauge, ()) in second, gauge
  seen = [k for k in second if k[0] == "impala_actor_last_seen_timestamp_seconds"]
  # Local actors' ids name the run: another run's actors on this machine are not these.
  actors = {tuple(dict(labels)["actor"].rsplit("-", 1)) for _, labels in seen}
  assert {name for name, _ in actors} == {"local-0", "local-1"} and len({r for _, r in actors}) == 1
  # Resource usage of the process.
  assert value(second, "process_cpu_seconds_total") > 0
  assert value(second, "process_resident_memory_bytes") > 50e6
  assert value(second, "process_open_fds") > 0 and value(second, "process_threads") > 1


@pytest.mark.slow
def test_summary_progress_record_and_metrics_name_every_counter_alike(tmp_path):
  """One run of the learner program in this process: its final summary, its last
  progress.jsonl record and a /metrics scrape taken after it stopped render one snapshot."""
  config = Config(
    local_actors=2,
    port=0,
    metrics_port=free_port(),
    run_dir=str(tmp_path),
    max_frames=100_000,
    log_every=0.5,
  )
  with contextlib.ExitStack() as resources:
    summary, status = program.train(config, time.monotonic(), resources)
    scraped = scrape(config.metrics_port)
  last = json.loads((tmp_path / "progress.jsonl").read_text().splitlines()[-1])
  assert status == 0 and summary["stop_reason"] == "max_frames", summary
  assert summary["frames"] >= 100_000 and summary["accepted"] > 0 and summary["episodes"] > 0
  for name in COUNTERS:
    assert summary[name] == last[name] == value(scraped, f"impala_{name}_total"), name
  assert summary["rejected"] == last["rejected"] == {}
  assert not [key for key in scraped if key[0] == "impala_rejected_total"]
  for name in ("version", "return_mean_100", "episodes_in_mean", "policy_lag", "policy_lag_mean"):
    assert summary[name] == last[name] == pytest.approx(value(scraped, f"impala_{name}")), name


@pytest.mark.slow
def test_console_prints_plain_lines_when_not_a_terminal(run):
  progress_lines = [line for line in run["stderr"] if line.startswith("[")]
  assert len(progress_lines) >= 2 and not any("\r" in line for line in run["stderr"])
  assert all("queue" in line and "accepted" in line for line in progress_lines)


def sample_record(**figures) -> dict:
  """A progress record as progress.record makes them, with `figures` over its values."""
  record = dict(
    seconds=12.5, frames=1_000_000, frames_per_second=200_000.0, updates=400,
    updates_per_second=80.0, return_mean_100=0.94, episodes_in_mean=100, policy_lag=1.5,
    queue_depth=0, actors_connected=2, received=800, accepted=800, duplicates=0, stale=0,
    rejected={}, abandoned=0, unauthenticated=0, unfinished=0, waiting_for="",
  )  # fmt: skip
  return {**record, **figures}


def test_console_rewrites_one_line_on_a_terminal():
  class Terminal(io.StringIO):
    def isatty(self):
      return True

  screen = Terminal()
  console = progress.Console(screen)
  console.show(sample_record(frames=1))
  console.show(sample_record(frames=2))
  console.close()
  first, second = screen.getvalue().split("\r\x1b[K")[1:]
  assert "  1 frames " in first and "  2 frames " in second
  assert "\n" not in first and second.endswith("\n") and second.count("\n") == 1


@pytest.mark.slow
def test_tensorboard_events_hold_the_scalars(run):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  events = EventAccumulator(str(run["dir"] / "run"))
  events.Reload()
  assert set(progress.SCALARS.values()) <= set(events.Tags()["scalars"])
  returns = events.Scalars("episode/return_mean_100")
  assert [e.step for e in returns] == sorted(e.step for e in returns)  # frames as the step
  assert returns[-1].value > returns[0].value and returns[-1].step > 0
  assert events.Scalars("optim/learning_rate")[-1].value == pytest.approx(1e-3)


@pytest.mark.slow
def test_plot_writes_a_png_of_the_requested_size(run, tmp_path, capsys):
  out = tmp_path / "curve.png"
  assert plot.main([str(run["dir"] / "run"), "-o", str(out), "--size", "900x600"]) == 0
  header = out.read_bytes()[:24]
  assert header[:8] == b"\x89PNG\r\n\x1a\n"
  assert struct.unpack(">II", header[16:24]) == (900, 600)
  assert out.stat().st_size > 10_000


@pytest.mark.slow
def test_evaluation_of_the_trained_checkpoint_reaches_475_and_a_fresh_one_does_not(
  run, tmp_path, capsys
):
  """Evaluation uses the moving average of the parameters (see `run` for the figures)."""
  assert evaluate.main([str(run["dir"] / "run"), "--episodes", "50"]) == 0
  trained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert trained["checkpoint"] == run["summary"]["model"]
  assert trained["mean"] >= 475 and trained["episodes"] == 50 and trained["params"] == "averaged"
  saving.checkpoint(learner_lib.build(Config(checkpoint_dir=str(tmp_path))).learner, True, 0.0)
  assert evaluate.main([str(tmp_path), "--episodes", "50", "--policy", "sampled"]) == 0
  untrained = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert untrained["mean"] < 100 and untrained["min"] <= untrained["mean"] <= untrained["max"]


@pytest.mark.slow
def test_evaluation_records_a_video_when_asked(run, tmp_path, capsys):
  pytest.importorskip("moviepy")  # requirements-dev.txt has it; users install it to record
  video = tmp_path / "video"
  assert evaluate.main([str(run["dir"] / "run"), "--episodes", "2", "--video", str(video)]) == 0
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  files = list(video.glob("*.mp4"))
  assert len(files) == 1 and files[0].stat().st_size > 1000 and result["video_return"] > 0


def test_evaluate_without_a_checkpoint_is_a_one_line_error(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    evaluate.main([str(tmp_path)])
  assert e.value.code == 2
  assert (
    capsys.readouterr().err.strip()
    == f"evaluate: error: no readable checkpoint or model at {str(tmp_path)!r}"
  )


def test_actor_metrics(learner_server):
  _, port = learner_server
  actor = Session(Config(grpc_host=f"127.0.0.1:{port}", rpc_timeout=10.0))
  exporter = metrics.serve(metrics.ActorCollector(actor), 0, "127.0.0.1")
  try:
    before = scrape(exporter.port)
    actor.run(threading.Event(), max_unrolls=3)
    after = scrape(exporter.port)
  finally:
    exporter.close()
  assert value(before, "impala_actor_frames_total") == 0
  assert value(after, "impala_actor_frames_total") == actor.rollout.frames > 0
  assert value(after, "impala_actor_unrolls_total") == 3
  assert value(after, "impala_actor_env_step_seconds_total") > 0
  assert value(after, "impala_actor_inference_seconds_total") > 0
  assert ("impala_actor_reconnects_total", ()) in after


def test_a_metrics_port_in_use_is_a_one_line_error(capsys):
  taken = metrics.serve(metrics.ActorCollector(Session(Config())), 0, "127.0.0.1")
  try:
    assert cli.actor(["--metrics-port", str(taken.port), "--grpc-host", "127.0.0.1:1"]) == 2
  finally:
    taken.close()
  assert (
    capsys.readouterr()
    .err.strip()
    .startswith(
      f"actor_client.py: error: bad value for --metrics-port: cannot listen on {taken.port} ("
    )
  )


@pytest.mark.slow
def test_the_run_directory_keeps_the_run(run):
  """The quick start's run directory: its configuration, checkpoints, progress, events
  with the hyperparameters, the final model; the last line says where, strict JSON after."""
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  d = run["dir"] / "run"
  assert Config(**files.read_file(d / "config.toml")).stop_at_return == 490
  assert run["summary"]["checkpoint"].startswith(str(d / "checkpoints" / "ckpt-"))
  assert run["summary"]["model"] == str(d / "model.npz") and run["summary"]["run_dir"] == str(d)
  model = checkpoint.record_of(str(d / "model.npz"))
  assert model["kind"] == "model" and model["updates"] == run["summary"]["updates"]
  events = EventAccumulator(str(d))
  events.Reload()
  hparams = events.PluginTagToContent("hparams")
  assert b"learning_rate" in b"".join(hparams.values()) and len(hparams) == 3
  assert run["stderr"][-1].startswith("reached the target 490: return ")
  assert run["stderr"][-1].rstrip().endswith(f"evaluate it with: python -m impala.evaluate {d}.")


@pytest.mark.slow
def test_a_run_directory_resumes_its_run_and_refuses_other_settings(run, tmp_path):
  d = tmp_path / "run"
  shutil.copytree(run["dir"] / "run", d)
  before = plot.read(str(d))
  frames = run["summary"]["frames"] + 200_000
  argv = [sys.executable, "learner_server.py", "--run-dir", str(d), "--port", str(free_port())]
  done = subprocess.run(
    argv + ["--max-frames", str(frames), "--stop-at-return", "1000"],  # local actors: the run's
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=180,
  )
  assert done.returncode == 1, done.stderr[-2000:]  # the cap came before the target
  assert f"resumed from {run['summary']['checkpoint'].replace(str(run['dir']), str(tmp_path))}" in (
    done.stderr
  )
  after = plot.read(str(d))[len(before) :]
  assert after and after[0]["frames"] >= run["summary"]["frames"]
  seconds = [r["seconds"] for r in before + after]
  assert seconds == sorted(seconds)  # the run's time goes on
  refused = subprocess.run(
    argv + ["--learning-rate", "0.0005"], cwd=ROOT, capture_output=True, text=True, timeout=120
  )
  assert refused.returncode == 2
  assert refused.stderr.strip().splitlines() == [
    f"learner_server.py: error: bad value for --learning-rate: 0.0005 (the run in {d} has "
    "learning_rate = 0.001: resume it with that, or start another --run-dir)"
  ]
