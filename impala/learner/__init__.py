"""The learner: its parts composed (parts.py); its state and update (learner.py), what it
keeps on disk (saving.py), the intake of uploads (intake.py) and the episodes it derives
from them (episodes.py), the actors it knows (registry.py), the batcher (batcher.py),
learner-side inference (inference.py), the port the server sees (port.py), the snapshot
every view renders (snapshot.py), the stop rules (stopping.py), the run's clock
(clock.py) and the learner program (program.py)."""

from impala.learner.learner import Learner
from impala.learner.parts import Parts, build
from impala.learner.snapshot import COUNTERS, Snapshot

__all__ = ["COUNTERS", "Learner", "Parts", "Snapshot", "build"]
