"""What both ends of a connection agree on: channel options, TLS credentials from files,
and the bearer token's call metadata."""

from __future__ import annotations

import grpc

from impala.config import Config, read_file

# The server accepts a client's pings this often even while no data flows (gRPC's
# default is every 5 minutes; a client that pings more often during a long update is
# sent GOAWAY "too_many_pings"). --keepalive-seconds may not go below twice this.
ACCEPT_PINGS_EVERY_MS = 1000


def channel_options(config: Config, server: bool = False) -> list:
  """Options of either end. Upload streams live long and sit idle while the learner is
  busy: both ends ping every --keepalive-seconds to notice a dead peer."""
  every = round(config.keepalive_seconds * 1000)
  options = [
    ("grpc.max_send_message_length", config.max_message_bytes),
    ("grpc.max_receive_message_length", config.max_message_bytes),
    ("grpc.keepalive_time_ms", every),
    ("grpc.keepalive_timeout_ms", max(every, 20_000)),
    ("grpc.http2.max_pings_without_data", 0),
  ]
  if server:
    options += [
      ("grpc.http2.min_ping_interval_without_data_ms", ACCEPT_PINGS_EVERY_MS),
      # A second learner on a busy port must fail to bind, not share it silently.
      ("grpc.so_reuseport", 0),
    ]
  return options


def bearer(token: str) -> tuple:
  """The call metadata that carries `token`."""
  return (("authorization", f"Bearer {token}"),)


def server_credentials(config: Config) -> grpc.ServerCredentials | None:
  """TLS from --tls-cert/--tls-key, mutual with --tls-client-ca; None for plaintext."""
  if not config.tls_cert:
    return None
  client_ca = read_file(config, "tls_client_ca") if config.tls_client_ca else None
  return grpc.ssl_server_credentials(
    [(read_file(config, "tls_key"), read_file(config, "tls_cert"))],
    root_certificates=client_ca,
    require_client_auth=client_ca is not None,
  )


def client_credentials(config: Config) -> grpc.ChannelCredentials | None:
  """TLS toward the learner when --tls-ca is given; None for plaintext."""
  if not config.tls_ca:
    return None
  client = config.tls_client_cert
  return grpc.ssl_channel_credentials(
    read_file(config, "tls_ca"),
    read_file(config, "tls_client_key") if client else None,
    read_file(config, "tls_client_cert") if client else None,
  )
