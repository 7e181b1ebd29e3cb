"""The actor: its rollout of environments and policy (rollout.py), or with learner-side
inference its environments alone (stepper.py), its session with the learner
(session.py), and the actor program (program.py). Only rollout.py needs JAX."""

from impala.actor.session import MAX_IN_FLIGHT, Session

__all__ = ["MAX_IN_FLIGHT", "Session"]
