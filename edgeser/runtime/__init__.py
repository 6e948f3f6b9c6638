"""Torch-free inference: recognizer, streams and backends."""
