"""Hindsight scorer: serves ONNX models over gRPC ``Scoring``, hot-loads on ``model.deployed``."""

__all__: list[str] = []
