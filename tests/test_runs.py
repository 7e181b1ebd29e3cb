"""What a researcher meets: flags and --help, the run directory, the console on a terminal,
the actor's lines, custom environments, the Python API and plots that compare runs."""

import dataclasses
import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time

import grpc
import numpy as np
import pytest
from conftest import ROOT, free_port
from test_monitoring import sample_record

from impala import environments, evaluate, plot, policy, progress, rundir
from impala.actor import session
from impala.config import Config, ConfigError, flags

CORRIDOR = "examples.corridor"  # the README's example of an environment of one's own


def strict_json(text: str):
  """JSON as every parser reads it: NaN and Infinity are refused."""
  return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))


# --- Flags ---


def test_help_imports_nothing_heavy():
  """--help (and a bad flag) answer before JAX, gRPC, numpy or gymnasium are imported."""
  code = (
    "import sys, time\n"
    "from impala import cli\n"
    "for program in (cli.learner, cli.actor):\n"
    "  try:\n"
    "    program(['--help'])\n"
    "  except SystemExit:\n"
    "    pass\n"
    "print(sorted(m for m in ('jax', 'grpc', 'numpy', 'gymnasium') if m in sys.modules))\n"
  )
  done = subprocess.run(
    [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
  )
  assert done.returncode == 0, done.stderr
  assert done.stdout.strip().splitlines()[-1] == "[]"


def test_help_is_grouped_with_metavars_and_defaults_as_typed():
  learner = flags.parser_for("learner").format_help()
  for title in list(flags.GROUPS.values())[:-1]:  # the last is the actor's own
    assert f"\n{title}:\n" in learner, title
  assert "--hidden-sizes N,N,..." in learner and "(default: 64,64;" in learner
  assert "--stop-at-return X" in learner and "(default: none;" in learner
  assert (
    "--run-dir DIR" in learner
    and "--runs DIR" in learner
    and "--torso {mlp,minatar,shallow,deep}" in learner
  )
  assert "--logdir DIR" in learner and "--tls-cert PATH" in learner and "--port PORT" in learner
  assert "--grpc-host" not in learner and "--num-envs N " in learner
  actor = flags.parser_for("actor").format_help()
  assert "--grpc-host HOST:PORT" in actor and "--wait-for-next-run" in actor
  assert "run settings (the learner's handshake decides them" in actor
  assert "--batch-size" not in actor and "--local-actors" not in actor


@pytest.mark.parametrize(
  "program,argv,message",
  [
    ("learner", ["--local-actor", "2"], "unknown flag --local-actor; did you mean --local-actors?"),
    ("learner", ["--stop-at", "9"], "unknown flag --stop-at; did you mean --stop-at-return?"),
    (
      "actor",
      ["--batch-size", "4"],
      "unknown flag --batch-size: it is a setting of the learner, not of the actor",
    ),
    (
      "learner",
      ["--grpc-host", "h:1"],
      "unknown flag --grpc-host: it is a setting of an actor, not of the learner",
    ),
    ("learner", ["stray"], "unexpected argument 'stray'"),
  ],
)
def test_a_flag_a_program_does_not_take_is_named_with_what_was_meant(program, argv, message):
  with pytest.raises(ConfigError) as e:
    flags.parse(argv, program, environ={})
  assert str(e.value).startswith(message), e.value


def test_parse_reports_which_settings_were_given():
  config, given = flags.parse(["--num-envs", "4"], "actor", environ={"IMPALA_ENV_ID": "Acrobot-v1"})
  assert given == {"num_envs", "env_id"} and config.num_envs == 4


# --- The run directory ---


def test_a_run_directory_is_named_made_and_refuses_other_settings(tmp_path):
  config = rundir.resolve(Config(runs=str(tmp_path), env_id="ALE/Pong-v5", torso="deep"))
  assert re.fullmatch(r"ALE_Pong-v5-\d{8}-\d{6}", os.path.basename(config.run_dir))
  assert config.logdir == config.run_dir
  assert config.checkpoint_dir == os.path.join(config.run_dir, "checkpoints")
  rundir.create(config)
  again = Config(run_dir=config.run_dir, env_id="ALE/Pong-v5", torso="deep", max_frames=5)
  assert rundir.resolve(again).checkpoint_dir == config.checkpoint_dir  # a stop may change
  elsewhere = rundir.resolve(dataclasses.replace(again, checkpoint_dir="/x"))
  assert elsewhere.checkpoint_dir == "/x"
  with pytest.raises(ConfigError) as e:
    rundir.resolve(Config(run_dir=config.run_dir, env_id="ALE/Pong-v5", torso="shallow"))
  assert str(e.value) == (
    f"bad value for --torso: 'shallow' (the run in {config.run_dir} has torso = 'deep': "
    "resume it with that, or start another --run-dir)"
  )
  assert rundir.resolve(Config(runs=str(tmp_path))).run_dir != config.run_dir


def test_records_and_summaries_are_strict_json():
  assert (
    progress.dumps(dict(a=float("nan"), b=[float("inf"), 1.5])) == '{"a": null, "b": [null, 1.5]}'
  )


# --- The console ---


@pytest.mark.parametrize("width", [40, 80, 120, 200])
def test_the_live_line_fits_and_puts_the_important_fields_first(width):
  record = sample_record(frames=12_345_678, return_mean_100=0.9412)
  text = progress.fit(progress.fields(record), width - 1)
  assert len(text) <= width - 1
  assert text.startswith("[12.5s]")
  if width >= 80:
    assert "return 0.9412  12.3M frames 200k/s" in text and "12.3M frames 200k/s" in text
    assert "not accepted" not in text  # nothing was refused
    shown = progress.fit(progress.fields(dict(record, duplicates=3, abandoned=1)), width - 1)
    assert "not accepted: 3 dup, 1 abandoned" in shown
  if width >= 200:
    assert text.endswith("queue 0") and "mean of 100 episodes" in text


def read_terminal(fd: int, proc: subprocess.Popen, timeout: float) -> str:
  """All a process writes to the pseudo-terminal `fd` until it exits."""
  chunks, deadline = [], time.monotonic() + timeout
  while time.monotonic() < deadline:
    try:
      chunk = os.read(fd, 65536)
    except OSError:  # the process closed its end
      break
    if not chunk:
      break
    chunks.append(chunk)
  return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 200])
def test_the_console_fits_a_terminal(columns, tmp_path):
  """The learner's stderr on a pseudo-terminal of `columns` columns: every rendering of
  the live line fits in one row (so `\\r\\x1b[K` rewrites it whole)."""
  master, slave = pty.openpty()
  fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
  proc = subprocess.Popen(
    [sys.executable, "learner_server.py", "--local-actors", "1", "--max-frames", "400000"]
    + ["--log-every", "0.5", "--port", str(free_port()), "--run-dir", str(tmp_path)],
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=slave,
    text=True,
  )
  os.close(slave)
  try:
    screen = read_terminal(master, proc, timeout=180)
    summary = strict_json(proc.communicate(timeout=30)[0].strip().splitlines()[-1])
  finally:
    proc.kill()
    os.close(master)
  rows = [row.replace("\x1b[K", "") for row in re.split(r"\r\n|\r|\n", screen)]
  live = [row for row in rows if row.startswith("[")]
  assert len(live) >= 2, screen
  assert all(len(row) < columns for row in live), max(live, key=len)
  assert all(" frames " in row and "return" in row for row in live)
  assert summary["stop_reason"] == "max_frames"
  assert any(row.startswith("stopped (max frames): return") for row in rows), rows[-5:]


# --- The actor ---


@pytest.mark.slow
def test_an_actor_says_what_it_does_and_stops_with_the_run(tmp_path):
  port = free_port()
  learner = subprocess.Popen(
    [sys.executable, "learner_server.py", "--port", str(port), "--max-seconds", "25"]
    + ["--run-dir", str(tmp_path)],
    cwd=ROOT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  env = dict(os.environ, GRPC_HOST=f"localhost:{port}")
  argv = [sys.executable, "actor_client.py", "--log-every", "1"]
  actors = [
    subprocess.Popen(
      argv + extra, cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    for extra in (["--env-id", "Acrobot-v1", "--actor-id", "told"], ["--actor-id", "signalled"])
  ]
  try:
    signalled = actors[1]
    for line in signalled.stderr:  # once it acts, SIGTERM: it stops at once
      if "connected to learner" in line:
        break
    signalled.send_signal(signal.SIGTERM)
    assert signalled.wait(timeout=5) == 0
    last = signalled.stderr.read().strip().splitlines()[-1]
    assert re.search(r"signalled stopped \(SIGTERM\): [\d,]+ frames, [\d,]+ unrolls in", last)
    told = actors[0]
    assert told.wait(timeout=120) == 0  # it stops by itself when the learner's run ends
    lines = told.stderr.read().splitlines()
  finally:
    for proc in (*actors, learner):
      proc.kill()
      proc.wait()
  text = "\n".join(lines)
  assert "--env-id Acrobot-v1 is ignored: the learner's run sets env_id=CartPole-v1" in text
  assert re.search(
    rf"connected to learner localhost:{port}: run \w+, CartPole-v1 x 64 environments", text
  )
  assert re.search(r"[\d,]+ frames \([\d,]+/s\), [\d,]+ unrolls \([\d.]+/s\)", text)
  assert "told stopped (the learner's run ended: max_seconds)" in lines[-1]


# --- Custom environments ---


def test_module_colon_id_and_env_module_register_the_environment():
  spec = environments.describe(f"{CORRIDOR}:Corridor-v0")
  assert spec.observation_shape == (8,) and spec.num_actions == 2
  assert environments.describe("Corridor-v0", modules=CORRIDOR) == spec
  with pytest.raises(ConfigError) as e:
    environments.describe("Corridor-v0", modules="no_such_module")
  assert str(e.value).startswith(
    "bad value for --env-module: cannot import module 'no_such_module' (No module named"
  )


def train(run_dir, *flags_) -> dict:
  done = subprocess.run(
    [sys.executable, "learner_server.py", "--local-actors", "2", "--port", str(free_port())]
    + ["--stop-at-return", "0.8", "--max-seconds", "120", "--run-dir", str(run_dir), *flags_],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=240,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return strict_json(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_an_environment_of_ones_own_trains_with_env_module_and_evaluates(tmp_path):
  summary = train(tmp_path, "--env-module", CORRIDOR, "--env-id", "Corridor-v0")
  assert summary["reached_target"] and summary["model"] == str(tmp_path / "model.npz")
  done = subprocess.run(
    [sys.executable, "-m", "impala.evaluate", str(tmp_path), "--episodes", "20"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert done.returncode == 0, done.stderr
  assert strict_json(done.stdout.strip().splitlines()[-1])["mean"] >= 0.8


@pytest.mark.slow
def test_module_colon_id_trains_and_the_python_api_plays_as_evaluate_does(tmp_path):
  summary = train(tmp_path, "--env-id", f"{CORRIDOR}:Corridor-v0")
  assert summary["reached_target"]
  played = policy.load(str(tmp_path))  # the README's few lines
  envs = environments.make_batch(f"{CORRIDOR}:Corridor-v0", 20)
  obs, _ = envs.reset(seed=7)
  returns, done = np.zeros(20), np.zeros(20, bool)
  while not done.all():
    obs, reward, terminated, truncated, _ = envs.step(played(obs))
    returns += np.where(done, 0.0, reward)
    done |= terminated | truncated
  result = evaluate.evaluate(str(tmp_path), episodes=20, seed=7)
  assert result["mean"] == pytest.approx(returns.mean()) and result["mean"] >= 0.8
  assert played(obs[0]).shape == ()  # one observation: one action


# --- Plots ---


def fake_run(path, seed: int, learning_rate: float, slope: float):
  rundir.create(Config(run_dir=str(path), seed=seed, learning_rate=learning_rate))
  records = [
    sample_record(frames=i * 1000, seconds=float(i), return_mean_100=slope * i + seed)
    | dict(loss=1.0 / i, entropy=0.6)
    for i in range(1, 8)
  ]
  (path / "progress.jsonl").write_text("".join(progress.dumps(r) + "\n" for r in records))


def test_a_plot_compares_runs_and_groups_seeds(tmp_path, capsys):
  for seed in (1, 2):
    fake_run(tmp_path / f"fast-{seed}", seed, 1e-3, 3.0)
  fake_run(tmp_path / "slow-1", 1, 1e-4, 1.0)
  groups = plot.group(plot.find([str(tmp_path / "*")]))
  assert sorted((name, len(runs)) for name, runs in groups.items()) == [
    ("learning_rate=0.0001", 1),
    ("learning_rate=0.001", 2),
  ]
  assert plot.main([str(tmp_path)]) == 0  # a folder of runs; the figure goes next to them
  assert "3 runs in 2 groups, 21 records" in capsys.readouterr().out
  header = (tmp_path / "curves.png").read_bytes()[:24]
  assert header[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", header[16:24]) == (1200, 1000)
  assert plot.main([str(tmp_path / "slow-1")]) == 0
  assert (tmp_path / "slow-1" / "curve.png").stat().st_size > 10_000
  with pytest.raises(SystemExit) as e:
    plot.main([str(tmp_path / "nothing-*")])
  assert e.value.code == 2


@pytest.mark.slow
def test_a_run_without_episodes_ends_in_strict_json_and_a_sentence(tmp_path):
  done = subprocess.run(
    [sys.executable, "learner_server.py", "--max-seconds", "2", "--port", str(free_port())]
    + ["--run-dir", str(tmp_path)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  summary = strict_json(done.stdout.strip().splitlines()[-1])
  assert done.returncode == 0 and summary["return_mean_100"] is None
  assert (
    done.stderr.strip().splitlines()[-1].startswith("stopped (max seconds): no episode ended, in ")
  )
  for line in (tmp_path / "progress.jsonl").read_text().splitlines():
    strict_json(line)


@pytest.mark.parametrize(
  "details,said",
  [
    (
      "DNS resolution failed for nosuchhost.invalid:50051: C-ares status is not ARES_SUCCESS",
      "cannot resolve host 'nosuchhost.invalid' (DNS)",
    ),
    (
      "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: "
      "Failed to connect to remote host: Connection refused",
      "connection refused (no learner listens there yet?)",
    ),
    ("Socket closed", "UNAVAILABLE (Socket closed)"),
  ],
)
def test_an_actor_says_why_the_learner_is_out_of_reach(details, said):
  class Failed(grpc.RpcError):
    def code(self):
      return grpc.StatusCode.UNAVAILABLE

    def details(self):
      return details

  assert session.reason(Failed(), "nosuchhost.invalid:50051") == said
