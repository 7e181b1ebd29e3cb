"""Exits 0 when the learner's gRPC health service answers SERVING, 1 otherwise.

    python -m impala.healthcheck [host:port]
    # default: localhost:$IMPALA_HEALTH_PORT, else localhost:$IMPALA_PORT, else localhost:50051

The images' HEALTHCHECK runs it; Kubernetes asks the same service with its native
gRPC probes.
"""

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def status(target: str, timeout: float = 5.0) -> str:
  """The learner's overall health status name, or the gRPC error code name."""
  with grpc.insecure_channel(target) as channel:
    try:
      reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=timeout
      )
    except grpc.RpcError as e:
      return e.code().name
  return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  port = os.environ.get("IMPALA_HEALTH_PORT") or os.environ.get("IMPALA_PORT") or "50051"
  target = argv[0] if argv else f"localhost:{port}"
  answer = status(target)
  print(f"{target}: {answer}")
  return 0 if answer == "SERVING" else 1


if __name__ == "__main__":
  sys.exit(main())
