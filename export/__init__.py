"""Export to ONNX and TFLite (needs the `export` extra)."""
