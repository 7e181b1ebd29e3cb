"""IMPALA (Espeholt et al. 2018) over gRPC: a learner server and actor clients."""

from impala.config import Config, ConfigError

__all__ = ["Config", "ConfigError"]
