"""Generated protobuf code for protos/impala.proto (messages only: the service's methods
pass raw bytes, see transport/server.py, so no gRPC stubs are generated).

Regenerate after editing the .proto (tests/test_protos.py checks freshness):

    python -m grpc_tools.protoc -Iimpala/transport/proto=protos --python_out=. \
        --pyi_out=. impala/transport/proto/impala.proto
"""
