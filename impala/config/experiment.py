"""The settings of an experiment: the environment, the network and the optimisation (the
hyperparameters a run directory keeps, and TensorBoard shows)."""

from __future__ import annotations

import dataclasses

from impala.config.checks import MAX_LAYER
from impala.config.setting import ALGORITHMS, LR_SCHEDULES, PRESETS, TORSOS, setting


@dataclasses.dataclass
class Experiment:
  """What is learned, and how."""

  preset: str = setting(
    "",
    "start from the settings known to work for a family of environments "
    "(impala/presets/); default: the family of --env-id",
    choices=PRESETS,
    optional=True,
    group="environment",
  )

  # Environment.
  env_id: str = setting(
    "CartPole-v1",
    "gymnasium environment id; MODULE:ID imports MODULE first",
    run=True,
    group="environment",
    resume=True,
  )
  env_kwargs: dict = setting(
    {},
    "extra keyword arguments for the environment, as JSON",
    run=True,
    group="environment",
    resume=True,
  )
  env_module: str = setting(
    "",
    "modules to import first, comma-separated: they register your own environments "
    "(in the learner, its actors and evaluation alike)",
    run=True,
    group="environment",
    metavar="MODULE",
  )
  num_envs: int = setting(
    64,
    "environments per actor, stepped as one batch",
    run=True,
    group="environment",
    above=0,
    at_most=1 << 16,
  )
  unroll_length: int = setting(
    20, "steps per unroll (T)", run=True, group="environment", above=0, at_most=1 << 16
  )
  seed: int = setting(
    0,
    "seed of parameters, environments and sampling",
    run=True,
    group="environment",
    at_least=0,
    at_most=2**32 - 1,
  )

  # Network.
  torso: str = setting(
    "mlp", "network torso", choices=TORSOS, run=True, group="network", resume=True
  )
  hidden_sizes: tuple = setting(
    (64, 64),
    "layer sizes of the MLP torso, comma-separated",
    run=True,
    group="network",
    resume=True,
  )
  lstm_size: int = setting(
    0,
    "size of the LSTM core; 0 for none",
    run=True,
    group="network",
    at_least=0,
    at_most=MAX_LAYER,
    resume=True,
  )

  # Learning (learner only, but the loss settings reach A3C actors).
  algorithm: str = setting(
    "impala",
    "impala: actors send unrolls, the learner takes V-trace gradients; appo: "
    "the same with PPO's clipped surrogate and several steps per batch; "
    "a3c: actors send the gradients of their own unrolls",
    choices=ALGORITHMS,
    run=True,
    group="optimisation",
  )
  batch_size: int = setting(
    2,
    "unrolls per update (each holds num_envs environments); "
    "a3c applies each actor's gradient alone",
    group="optimisation",
    above=0,
  )
  discount: float = setting(
    0.99, "discount factor gamma", run=True, group="optimisation", within=(0, 1, "]")
  )
  learning_rate: float = setting(1e-3, "RMSProp learning rate", group="optimisation", above=0)
  lr_schedule: str = setting(
    "constant",
    "constant, or linear: decayed to 0 over --lr-decay-frames",
    choices=LR_SCHEDULES,
    group="optimisation",
  )
  lr_decay_frames: int = setting(
    0, "frames of the linear decay; 0 for --max-frames", group="optimisation", at_least=0
  )
  rmsprop_decay: float = setting(
    0.99, "RMSProp decay of the squared-gradient average", group="optimisation", within=(0, 1, ")")
  )
  rmsprop_eps: float = setting(0.01, "RMSProp epsilon", group="optimisation", above=0)
  max_grad_norm: float = setting(
    40.0, "clip gradients to this global norm", group="optimisation", above=0
  )
  average_decay: float = setting(
    0.99,
    "decay of the moving average of the parameters kept for evaluation",
    group="optimisation",
    within=(0, 1, ")"),
  )
  baseline_cost: float = setting(
    0.5, "weight of the value loss", run=True, group="optimisation", at_least=0
  )
  entropy_cost: float = setting(
    0.01, "weight of the entropy bonus", run=True, group="optimisation", at_least=0
  )
  clip_rho: float = setting(
    1.0,
    "V-trace clipping of importance weights (rho-bar)",
    run=True,
    group="optimisation",
    at_least=1.0,
  )
  clip_pg_rho: float = setting(
    1.0,
    "V-trace clipping of the policy-gradient weights",
    run=True,
    group="optimisation",
    at_least=1.0,
  )
  max_abs_reward: float = setting(
    0.0,
    "clip rewards to [-x, x] in the loss; 0 for no clipping",
    run=True,
    group="optimisation",
    at_least=0,
  )
  max_abs_input: float = setting(
    1e6,
    "refuse unrolls whose rewards or float observations exceed this magnitude",
    group="serving",
    above=0,
  )
  ppo_clip: float = setting(
    0.2, "appo: clip the ratio pi/mu to [1 - x, 1 + x]", group="optimisation", above=0
  )
  ppo_epochs: int = setting(4, "appo: passes over each batch", group="optimisation", above=0)
  ppo_minibatches: int = setting(
    4, "appo: steps per pass, each on a part of the environments", group="optimisation", above=0
  )
  queue_size: int = setting(
    2, "unrolls the learner holds before actors must wait", group="optimisation", above=0
  )
  max_policy_lag: int = setting(
    0,
    "drop unrolls (a3c: gradients) acted by parameters more "
    "than this many updates old; 0 for no limit",
    group="optimisation",
    at_least=0,
  )
