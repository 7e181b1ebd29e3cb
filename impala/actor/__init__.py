"""The actor: its rollout of environments and policy (rollout.py), its session with the
learner (session.py), and the actor program (program.py)."""

from impala.actor.rollout import Rollout
from impala.actor.session import MAX_IN_FLIGHT, Session

__all__ = ["MAX_IN_FLIGHT", "Rollout", "Session"]
