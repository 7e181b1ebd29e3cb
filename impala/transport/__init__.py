"""Everything that crosses the wire: the codec of unrolls, weights and the handshake
(codec.py, frames.py), the learner's gRPC server (server.py), the actor's client
(client.py), and what both ends share (credentials.py). Only this package imports the
generated protobuf code."""
