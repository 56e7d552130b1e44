"""The runtime's gRPC API: runtime.proto and the Python code generated from it.

`runtime_pb2` holds the messages, `runtime_pb2_grpc` the stubs and servicers.
Regenerate both with `python -m timonel.node_agent.runtime.api.generate`.
"""
