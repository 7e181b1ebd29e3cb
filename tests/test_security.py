"""Shared token and TLS (optionally mutual) on a real server, with certificates made by
openssl for this test: right, missing and wrong credentials of every kind."""

import subprocess
import threading

import grpc
import pytest
from conftest import free_port, require_tool
from grpc_health.v1 import health_pb2, health_pb2_grpc

from impala import cli
from impala.actor import Session
from impala.config import Config
from impala.transport import codec
from impala.transport.client import LearnerClient


def openssl(*args, cwd):
  subprocess.run(
    [require_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60
  )


def make_ca(name: str, cwd):
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    f"/CN={name}",
    "-keyout",
    f"{name}.key",
    "-out",
    f"{name}.crt",
    cwd=cwd,
  )


def make_cert(name: str, ca: str, cwd, san: str = ""):
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    f"/CN={name}",
    "-keyout",
    f"{name}.key",
    "-out",
    f"{name}.csr",
    cwd=cwd,
  )
  (cwd / f"{name}.ext").write_text(
    f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n"
  )
  openssl(
    "x509",
    "-req",
    "-in",
    f"{name}.csr",
    "-CA",
    f"{ca}.crt",
    "-CAkey",
    f"{ca}.key",
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    f"{name}.ext",
    "-out",
    f"{name}.crt",
    cwd=cwd,
  )


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
  """Paths of a CA, a learner certificate for localhost, an actor certificate, and a
  second CA that signed none of them."""
  d = tmp_path_factory.mktemp("pki")
  make_ca("ca", d)
  make_ca("other-ca", d)
  make_cert("learner", "ca", d, san="DNS:localhost,IP:127.0.0.1")
  make_cert("actor", "ca", d)
  return {
    name: str(d / name)
    for name in [f"{n}.{e}" for n in ("ca", "other-ca", "learner", "actor") for e in ("crt", "key")]
  }


def hello(port: int, **settings):
  """The code of a Hello with these client settings (OK when it succeeds)."""
  client = LearnerClient(Config(grpc_host=f"localhost:{port}", rpc_timeout=5.0, **settings))
  try:
    client.hello("actor-x")
    return grpc.StatusCode.OK
  except grpc.RpcError as e:
    return e.code()
  finally:
    client.close()


def health_status(target: str) -> int:
  with grpc.insecure_channel(target) as channel:
    return (
      health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    )


def test_token_right_missing_and_wrong(serve, tmp_path):
  token_file = tmp_path / "token"
  token_file.write_text("s3cret-token\n")  # as a mounted Secret may end
  learner, port = serve(auth_token_file=str(token_file))
  assert hello(port) == grpc.StatusCode.UNAUTHENTICATED
  assert hello(port, auth_token="s3cret") == grpc.StatusCode.UNAUTHENTICATED
  assert hello(port, auth_token="s3cret-token") == grpc.StatusCode.OK
  assert hello(port, auth_token_file=str(token_file)) == grpc.StatusCode.OK
  assert learner.snapshot().unauthenticated == 2
  # The probe needs no token.
  assert health_status(f"127.0.0.1:{port}") == health_pb2.HealthCheckResponse.SERVING


def test_upload_stream_without_the_token_is_refused(serve, small_config):
  learner, port = serve(auth_token="t0ken")
  with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    call = channel.stream_stream(codec.method("Upload"))
    with pytest.raises(grpc.RpcError) as e:
      list(call(iter([b"anything"]), timeout=10))
  assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
  assert learner.snapshot().received == 0 and learner.snapshot().unauthenticated == 1


def test_tls_with_the_right_ca_a_wrong_ca_and_plaintext(serve, pki):
  _, port = serve(tls_cert=pki["learner.crt"], tls_key=pki["learner.key"], health_port=free_port())
  assert hello(port, tls_ca=pki["ca.crt"]) == grpc.StatusCode.OK
  assert hello(port, tls_ca=pki["other-ca.crt"]) == grpc.StatusCode.UNAVAILABLE
  assert hello(port) == grpc.StatusCode.UNAVAILABLE  # plaintext: fails cleanly
  assert hello(port, tls_ca=pki["ca.crt"]) == grpc.StatusCode.OK  # and the learner serves on


def test_health_port_answers_in_plaintext_beside_a_tls_port(serve, pki):
  health_port = free_port()
  learner, _ = serve(
    tls_cert=pki["learner.crt"],
    tls_key=pki["learner.key"],
    health_port=health_port,
    auth_token="t0ken",
  )
  assert health_status(f"127.0.0.1:{health_port}") == health_pb2.HealthCheckResponse.SERVING
  with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:  # nothing else there
    with pytest.raises(grpc.RpcError) as e:
      channel.unary_unary(codec.method("Hello"))(b"", timeout=5)
  assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_mutual_tls_needs_a_client_certificate_from_the_right_ca(serve, pki):
  _, port = serve(
    tls_cert=pki["learner.crt"], tls_key=pki["learner.key"], tls_client_ca=pki["ca.crt"]
  )
  assert hello(port, tls_ca=pki["ca.crt"]) == grpc.StatusCode.UNAVAILABLE
  assert (
    hello(
      port,
      tls_ca=pki["ca.crt"],
      tls_client_cert=pki["learner.crt"],
      tls_client_key=pki["learner.key"],
    )
    == grpc.StatusCode.OK
  )  # signed by the CA
  assert (
    hello(
      port, tls_ca=pki["ca.crt"], tls_client_cert=pki["actor.crt"], tls_client_key=pki["actor.key"]
    )
    == grpc.StatusCode.OK
  )


def test_an_actor_trains_over_mutual_tls_with_a_token(serve, pki):
  learner, port = serve(
    tls_cert=pki["learner.crt"],
    tls_key=pki["learner.key"],
    tls_client_ca=pki["ca.crt"],
    auth_token="t0ken",
  )
  actor = Session(
    Config(
      grpc_host=f"localhost:{port}",
      rpc_timeout=10.0,
      actor_id="secure",
      tls_ca=pki["ca.crt"],
      tls_client_cert=pki["actor.crt"],
      tls_client_key=pki["actor.key"],
      auth_token="t0ken",
    )
  )
  actor.run(threading.Event(), max_unrolls=3)
  assert (
    learner.snapshot().unrolls_by_actor == {"secure": 3} and learner.snapshot().unauthenticated == 0
  )


def test_unreadable_credential_files_are_one_line_errors(capsys):
  assert cli.actor(["--tls-ca", "/nonexistent/ca.crt"]) == 2
  assert capsys.readouterr().err.strip() == (
    "actor_client.py: error: bad value for --tls-ca: cannot read '/nonexistent/ca.crt' "
    "(No such file or directory)"
  )
