"""The runtime daemon's gRPC service: CRI-style RPCs mapped onto the managers."""
