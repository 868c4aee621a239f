"""Checkpoint -> verified ONNX graph + model card."""
