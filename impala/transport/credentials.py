"""What both ends of a connection agree on: channel options, TLS credentials from files,
and the bearer token's call metadata."""

from __future__ import annotations

import grpc

from impala.config import Config, read_file


def channel_options(max_message_bytes: int) -> list:
  """Options of both ends. Upload streams live long and can sit idle while the learner
  is busy: both ends ping every 20 s (and accept pings every 10 s) to notice a dead peer."""
  return [
    ("grpc.max_send_message_length", max_message_bytes),
    ("grpc.max_receive_message_length", max_message_bytes),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
  ]


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
