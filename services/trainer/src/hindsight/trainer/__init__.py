"""Hindsight trainer: leak-free LightGBM training, calibration and ONNX export."""
