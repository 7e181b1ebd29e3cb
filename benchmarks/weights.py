"""Weights. Serialize + deserialize the parameters of the CartPole MLP and of the
IMPALA deep network, and one full "actor asks, learner answers" fetch over gRPC.

Baselines, same run: a numpy copy of the same bytes (one contiguous buffer), and the
seed-style encoding, every float a repeated protobuf field
(re-implemented below in a few lines, with a message type built at run time).
"""

from __future__ import annotations

from concurrent import futures

import grpc
import jax
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from benchmarks import common
from impala import environments, networks
from impala import learner as learner_lib
from impala.config import Config
from impala.transport import codec, credentials
from impala.transport.client import LearnerClient

NETWORKS = {
  "mlp": Config(),
  "deep": Config(env_id=common.ATARI_SHAPED, torso="deep", num_envs=1),
}


def repeated_float_message():
  """`message Weights { repeated Param params = 1; }`, `Param { string name; repeated int64 shape;
  repeated float values; }`: the floats-as-repeated-fields format."""
  file = descriptor_pb2.FileDescriptorProto(
    name="seed_weights.proto", package="seed", syntax="proto3"
  )
  param = file.message_type.add(name="Param")
  param.field.add(name="name", number=1, type=9, label=1)  # string
  param.field.add(name="shape", number=2, type=3, label=3)  # repeated int64
  param.field.add(name="values", number=3, type=2, label=3)  # repeated float
  weights = file.message_type.add(name="Weights")
  weights.field.add(name="params", number=1, type=11, label=3, type_name=".seed.Param")
  pool = descriptor_pool.DescriptorPool()
  pool.Add(file)
  return message_factory.GetMessageClass(pool.FindMessageTypeByName("seed.Weights"))


def repeated_float_serialize(message_type, params: dict) -> bytes:
  return message_type(
    params=[
      dict(name=f"{module}/{name}", shape=value.shape, values=value.ravel().tolist())
      for module, leaves in params.items()
      for name, value in leaves.items()
    ]
  ).SerializeToString()


def repeated_float_deserialize(message_type, raw: bytes) -> dict:
  params: dict = {}
  for p in message_type.FromString(raw).params:
    module, _, name = p.name.rpartition("/")
    params.setdefault(module, {})[name] = np.array(p.values, np.float32).reshape(p.shape)
  return params


def fetch_seconds(config: Config, params: dict, message_type) -> tuple[float, float]:
  """Seconds per full weight fetch: this project's learner, and a seed-style server that
  serializes the repeated-float message per request."""
  parts = learner_lib.build(config)
  parts.start()
  learner = parts.learner
  ours, port, _ = parts.serve(0, address="127.0.0.1")
  seed = grpc.server(futures.ThreadPoolExecutor(4), options=credentials.channel_options(config))
  seed.add_generic_rpc_handlers(
    [
      grpc.method_handlers_generic_handler(
        "seed.Learner",
        {
          "GetWeights": grpc.unary_unary_rpc_method_handler(
            lambda request, context: repeated_float_serialize(message_type, params)
          )
        },
      )
    ]
  )
  seed_port = seed.add_insecure_port("127.0.0.1:0")
  seed.start()
  client = LearnerClient(Config(grpc_host=f"127.0.0.1:{port}"))
  try:

    def fetch():  # have_version 0: the whole parameters every time
      version, _ = client.decode_weights(client.weights("bench", 0).result())
      assert version == learner.version

    with grpc.insecure_channel(
      f"127.0.0.1:{seed_port}", options=credentials.channel_options(config)
    ) as ch:
      get = ch.unary_unary("/seed.Learner/GetWeights")

      def fetch_seed():  # the same call style as the actor's (a future), so only the format differs
        repeated_float_deserialize(message_type, get.future(b"", timeout=30).result())

      return common.seconds_per_call(fetch), common.seconds_per_call(fetch_seed)
  finally:
    client.close()
    ours.stop(grace=None).wait()
    seed.stop(grace=None).wait()
    parts.close()


def main():
  common.register_atari_shaped()
  message_type = repeated_float_message()
  comparisons, details = [], {}
  for net, config in NETWORKS.items():
    network = networks.for_run(config, environments.describe(config.env_id))
    params = jax.device_get(network.init(jax.random.PRNGKey(0)))
    leaves = jax.tree.leaves(params)
    flat = np.concatenate([leaf.ravel() for leaf in leaves])

    def ours(params=params):
      codec.decode_weights(codec.encode_weights(1, params))

    def seed(params=params):
      repeated_float_deserialize(message_type, repeated_float_serialize(message_type, params))

    # Check that all three move the same data before timing them.
    _, decoded = codec.decode_weights(codec.encode_weights(1, params))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(decoded), leaves))
    copy_s = common.seconds_per_call(flat.copy)
    ours_s = common.seconds_per_call(ours)
    seed_s = common.seconds_per_call(seed, min_seconds=2.0, warmup=1)
    fetch_s, seed_fetch_s = fetch_seconds(config, params, message_type)
    mb = flat.nbytes / 1e6
    details[net] = dict(
      megabytes=mb,
      tensors=len(leaves),
      copy_ms=copy_s * 1e3,
      serialize_deserialize_ms=ours_s * 1e3,
      repeated_float_ms=seed_s * 1e3,
      fetch_ms=fetch_s * 1e3,
      repeated_float_fetch_ms=seed_fetch_s * 1e3,
    )
    # Ratios as "how many times the baseline's time" (lower is better) would invert the
    # table's convention; report speeds (MB/s) instead so every ratio reads the same way.
    comparisons += [
      common.comparison(
        f"{net}: serialize + deserialize", "MB/s", mb / ours_s, "numpy copy", mb / copy_s
      ),
      common.comparison(
        f"{net}: serialize + deserialize", "MB/s", mb / ours_s, "repeated floats", mb / seed_s
      ),
      common.comparison(
        f"{net}: fetch over gRPC",
        "MB/s",
        mb / fetch_s,
        "repeated floats over gRPC",
        mb / seed_fetch_s,
      ),
    ]
  emit_parameters = {
    net: dict(torso=c.torso, hidden_sizes=c.hidden_sizes, env_id=c.env_id)
    for net, c in NETWORKS.items()
  }
  common.emit("weights", emit_parameters, comparisons, details)


if __name__ == "__main__":
  main()
