"""The benchmarks' own pieces: the baselines move the same data, and one benchmark runs
end to end (a smoke run: it checks the JSON, never a speed)."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT

from benchmarks import __main__ as runner
from benchmarks import weights
from impala import environments, networks
from impala.config import Config


def test_repeated_float_baseline_round_trips_the_params():
  config = Config()
  network = networks.for_run(config, environments.describe(config.env_id))
  params = jax.device_get(network.init(jax.random.PRNGKey(0)))
  message_type = weights.repeated_float_message()
  raw = weights.repeated_float_serialize(message_type, params)
  got = weights.repeated_float_deserialize(message_type, raw)
  for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_end_to_end_benchmark_prints_its_comparisons_as_json():
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "benchmarks.end_to_end",
      "--actors",
      "1",
      "--num-envs",
      "8",
      "--window",
      "1",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  result = json.loads(done.stdout)
  assert result["benchmark"] == "end_to_end" and result["machine"]["cores"] >= 1
  [comparison] = result["comparisons"]
  assert comparison["value"] > 0 and comparison["baseline"] > 0
  assert comparison["ratio"] == comparison["value"] / comparison["baseline"]
  assert "1 actors x 8 envs" in runner.table([result])


def test_runner_rejects_unknown_benchmarks(capsys):
  assert runner.main(["nope"]) == 2
  assert "unknown benchmark(s) nope; choose from end_to_end" in capsys.readouterr().err
