"""The actor: its two ways of acting for a run (modes.py): a rollout of environments and
policy (rollout.py), or with learner-side inference its environments alone (stepper.py);
its session with the learner (session.py), and the actor program (program.py). Only
rollout.py needs JAX."""

from impala.actor.modes import MAX_IN_FLIGHT
from impala.actor.session import Session

__all__ = ["MAX_IN_FLIGHT", "Session"]
