"""Presets and config files: every preset is valid, the layers' precedence, errors that
name the file and the key, and the effective configuration written and read back."""

import dataclasses

import pytest

from impala import presets
from impala.config import PRESETS, Config, ConfigError, files, flags


def write(tmp_path, text: str):
  path = tmp_path / "settings.toml"
  path.write_text(text)
  return str(path)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_makes_a_valid_config(name):
  config = Config(**presets.read(name), preset=name)
  assert config.preset == name


@pytest.mark.parametrize(
  "env_id,preset",
  [
    ("CartPole-v1", "classic"),
    ("Acrobot-v1", "classic"),
    ("bsuite/catch", "catch"),
    ("MinAtar/Breakout-v1", "minatar"),
    ("popgym-PositionOnlyCartPoleEasy-v0", "popgym"),
    ("ALE/Pong-v5", "atari"),
  ],
)
def test_the_environment_picks_its_family_preset(env_id, preset):
  config = flags.from_args(["--env-id", env_id], environ={})
  assert config.preset == preset
  assert all(getattr(config, k) == v for k, v in presets.read(preset).items())


def test_precedence_preset_then_file_then_environment_then_flags(tmp_path):
  path = write(tmp_path, 'preset = "atari"\nnum_envs = 8\nunroll_length = 30\nseed = 5\n')
  env = {"IMPALA_UNROLL_LENGTH": "40", "IMPALA_SEED": "6"}
  config = flags.from_args(["--config", path, "--seed", "7"], environ=env)
  atari = presets.read("atari")
  assert config.preset == "atari" and config.torso == atari["torso"] == "deep"  # preset
  assert config.num_envs == 8  # the file over the preset
  assert config.unroll_length == 40  # the environment over the file
  assert config.seed == 7  # flags over all
  # --preset wins over the file's preset; IMPALA_CONFIG names the file too.
  config = flags.from_args(["--preset", "catch"], environ={"IMPALA_CONFIG": path})
  assert config.preset == "catch" and config.torso == "mlp" and config.num_envs == 8


@pytest.mark.parametrize(
  "text,message",
  [
    ("num_envs = 0\n", "settings.toml: bad value for num_envs: 0 (must be > 0)"),
    ('num_envs = "many"\n', "settings.toml: bad value for num_envs: 'many' (expected int)"),
    ("hidden_sizes = [32, 1.5]\n", "bad value for hidden_sizes: [32, 1.5] (expected a list"),
    ('torso = "cnn"\n', "settings.toml: bad value for torso: 'cnn' (allowed: mlp, minatar,"),
    ('preset = "go"\n', "settings.toml: bad value for preset: 'go' (allowed: atari, catch,"),
    ("learning_rat = 0.1\n", "settings.toml: unknown setting 'learning_rat'; did you mean"),
    ('auth_token = "s"\n', "settings.toml: unknown setting 'auth_token'"),
    ("num_envs = \n", "settings.toml: not TOML"),
  ],
)
def test_a_bad_file_names_the_file_the_key_and_what_is_allowed(tmp_path, text, message):
  with pytest.raises(ConfigError) as e:
    flags.from_args(["--config", write(tmp_path, text)], environ={})
  assert message in str(e.value)
  assert "\n" not in str(e.value)


def test_an_unreadable_file_is_a_bad_flag():
  with pytest.raises(ConfigError, match=r"bad value for --config: cannot read '/nonexistent"):
    flags.from_args(["--config", "/nonexistent.toml"], environ={})


def test_the_effective_configuration_reads_back_as_itself(tmp_path):
  config = flags.from_args(
    [
      "--env-id",
      "MinAtar/Breakout-v1",
      "--hidden-sizes",
      "8,9",
      "--env-kwargs",
      '{"difficulty_ramping": false, "name": "a\\"b"}',
      "--auth-token",
      "secret",
      "--max-frames",
      "1000",
      "--stop-at-return",
      "15",
    ],
    environ={},
  )
  text = files.to_toml(config)
  assert "secret" not in text and "\nauth_token =" not in text
  again = flags.from_args(["--config", write(tmp_path, text)], environ={})
  assert again == dataclasses.replace(config, auth_token="")


def test_a_linear_schedule_needs_a_frame_budget():
  with pytest.raises(
    ConfigError, match="a linear schedule needs --lr-decay-frames or --max-frames"
  ):
    flags.from_args(["--lr-schedule", "linear"], environ={})
