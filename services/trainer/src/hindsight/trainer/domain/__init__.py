"""Pure training logic: outcome derivation, data-quality gate, leak-free splits, training,
calibration, metrics, ONNX export and parity, the schedule. No NATS, SQL or HTTP here."""
