"""Servicer implementations, one module per gRPC service."""
