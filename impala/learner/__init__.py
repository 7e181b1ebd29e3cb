"""The learner: its state and update (learner.py), the intake of uploads (intake.py), the
actors it knows (registry.py), the batcher (batcher.py), the snapshot every view renders
(snapshot.py), and the learner program (program.py)."""

from impala.learner.learner import Learner
from impala.learner.registry import NotReady
from impala.learner.snapshot import COUNTERS, Snapshot

__all__ = ["COUNTERS", "Learner", "NotReady", "Snapshot"]
