"""Generated protobuf and gRPC code for protos/impala.proto.

Regenerate after editing the .proto (tests/test_protos.py checks freshness):

    python -m grpc_tools.protoc -Iimpala/proto=protos --python_out=. \
        --pyi_out=. --grpc_python_out=. impala/proto/impala.proto
"""
