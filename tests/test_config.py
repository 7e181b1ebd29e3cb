"""Configuration: defaults, flags, environment variables and one-line errors."""

import socket
import subprocess
import sys

import pytest
from conftest import ROOT

from impala import cli
from impala import learner as learner_lib
from impala.config import Config, ConfigError, flags


def test_defaults_are_valid_and_cartpole():
  config = Config()
  assert config.env_id == "CartPole-v1" and config.torso == "mlp"


def test_flags_override_environment_which_overrides_defaults():
  env = {"GRPC_HOST": "learner:7", "IMPALA_NUM_ENVS": "8", "IMPALA_UNROLL_LENGTH": "9"}
  config = flags.from_args(
    ["--num-envs", "16", "--hidden-sizes", "32,32", "--env-kwargs", '{"max_episode_steps": 100}'],
    environ=env,
  )
  assert config.grpc_host == "learner:7" and config.num_envs == 16 and config.unroll_length == 9
  assert config.hidden_sizes == (32, 32) and config.env_kwargs == {"max_episode_steps": 100}


@pytest.mark.parametrize(
  "argv,message",
  [
    (["--num-envs", "0"], "bad value for --num-envs: 0 (must be > 0)"),
    (["--num-envs", "many"], "bad value for --num-envs: 'many' (expected int)"),
    (["--torso", "cnn"], "bad value for --torso: 'cnn' (allowed: mlp, minatar, shallow, deep)"),
    (["--discount", "1.5"], "bad value for --discount: 1.5 (must be in [0, 1])"),
    (["--env-kwargs", "[1]"], "bad value for --env-kwargs: '[1]' (expected a JSON object)"),
    (["--grpc-host", "nohost"], "bad value for --grpc-host: 'nohost' (must be host:port"),
    (["--no-such-flag"], "unknown flag --no-such-flag; see"),
    (["--local-actor", "2"], "unknown flag --local-actor; did you mean --local-actors?"),
    (["--env", "Acrobot-v1"], "unknown flag --env; did you mean --env-id?"),
    (
      ["--num-learners", "2", "--learner-index", "2", "--coordinator-address", "h:7000"],
      "bad value for --learner-index: 2 (must be in [0, 2))",
    ),
    (
      ["--num-learners", "2"],
      "bad value for --coordinator-address: '' (several learners need learner 0's host:port",
    ),
    (
      ["--advertise-address", "learner-1"],
      "bad value for --advertise-address: 'learner-1' (must be host:port)",
    ),
    (["--algorithm", "ppo"], "bad value for --algorithm: 'ppo' (allowed: impala, appo, a3c)"),
    (
      ["--algorithm", "a3c", "--num-learners", "2", "--coordinator-address", "h:7000"],
      "bad value for --num-learners: 2 (a3c runs with one learner)",
    ),
    (["--learning-rate", "inf"], "bad value for --learning-rate: inf (must be a finite number)"),
    (["--stop-at-return", "inf"], "bad value for --stop-at-return: inf (must be a finite"),
    (["--seed", str(2**70)], f"bad value for --seed: {2**70} (must be <= 4294967295)"),
    (["--max-message-mb", "4096"], "bad value for --max-message-mb: 4096 (must be <= 2047)"),
    (["--lstm-size", "100000"], "bad value for --lstm-size: 100000 (must be <= 16384)"),
    (["--num-envs", "1000000000"], "bad value for --num-envs: 1000000000 (must be <= 65536)"),
    (["--hidden-sizes", "64,0"], "bad value for --hidden-sizes: (64, 0) (must be one or more"),
    (["--actor-id", "a b"], "bad value for --actor-id: 'a b' (1-128 letters, digits and"),
    (["--keepalive-seconds", "1"], "bad value for --keepalive-seconds: 1.0 (must be >= 2)"),
    (["--fresh", "maybe"], "bad value for --fresh: 'maybe' (expected true or false)"),
  ],
)
def test_bad_values_name_the_flag_and_what_is_allowed(argv, message):
  with pytest.raises(ConfigError) as e:
    flags.from_args(argv, environ={})
  assert message in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["learner_server.py", "actor_client.py"])
def test_entry_points_print_one_line_and_exit_non_zero(script):
  result = subprocess.run(
    [sys.executable, script, "--unroll-length", "-3"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert lines == [f"{script}: error: bad value for --unroll-length: -3 (must be > 0)"]


@pytest.mark.parametrize(
  "args,reason",
  [
    (["--env-id", "Nope-v0"], "cannot make 'Nope-v0' with {}: Environment `Nope` doesn't exist."),
    (
      ["--env-id", "ALE/Pongg-v5"],
      "cannot make 'ALE/Pongg-v5' with {}: ale-py has no game Pongg (ROM 'pongg')",
    ),
    (
      ["--env-id", "ALE/Pong-v5", "--env-kwargs", '{"lives": 3}'],
      """cannot make 'ALE/Pong-v5' with {"lives": 3}: """,
    ),
  ],
)
def test_an_environment_that_cannot_be_made_is_one_line(args, reason, capsys):
  assert cli.learner(["--port", "0", *args]) == 2
  [line] = [x for x in capsys.readouterr().err.strip().splitlines() if "error" in x.lower()]
  assert line.startswith(
    "learner_server.py: error: bad value for --env-id/--env-kwargs: " + reason
  ), line


@pytest.mark.parametrize(
  "args,message",
  [
    (
      ["--torso", "deep"],
      "bad value for --torso: 'deep' (a convolutional torso needs image observations "
      "[H, W, C]; CartPole-v1 has [4]; use mlp)",
    ),
    (
      ["--env-id", "MinAtar/Breakout-v1", "--torso", "shallow"],
      "bad value for --torso: 'shallow' (does not fit observations [10, 10, 4]: the images "
      "are too small for it)",
    ),
    (
      ["--lstm-size", "8192"],
      "bad value for --lstm-size/--hidden-sizes: the network's weights are 1,032 MiB, over "
      "--max-message-mb 64",
    ),
    (
      ["--num-envs", "60000", "--unroll-length", "1000"],
      "bad value for --num-envs/--unroll-length: an unroll of 60000 environments x 1000 "
      "steps is 1,947 MiB, over --max-message-mb 64",
    ),
  ],
)
def test_settings_that_do_not_fit_the_environment_or_a_message_are_one_line(args, message, capsys):
  assert cli.learner(["--port", "0", *args]) == 2
  assert capsys.readouterr().err.strip().splitlines() == [f"learner_server.py: error: {message}"]


def test_port_in_use_is_one_line(capsys):
  with socket.socket(socket.AF_INET6) as busy:
    busy.bind(("::", 0))
    busy.listen()
    port = busy.getsockname()[1]
    assert cli.learner(["--port", str(port)]) == 2
  # gRPC's C core logs its own diagnostic on the file descriptor; ours is the one line.
  assert capsys.readouterr().err.strip().splitlines() == [
    (
      f"learner_server.py: error: cannot listen on [::]:{port} (port in use?); "
      "choose another with --port"
    )
  ]


def test_appo_minibatches_must_divide_the_batch():
  config = Config(algorithm="appo", num_envs=3, batch_size=2, ppo_minibatches=4)
  with pytest.raises(ConfigError, match=r"bad value for --ppo-minibatches: 4 \(must divide the 6"):
    learner_lib.build(config)  # before anything is built
