"""Pure scoring logic: feature validation, intervals, deployment state, the model store.

Nothing here imports NATS, gRPC, HTTP or touches files; ``app.py`` wires it to transports.
"""

__all__: list[str] = []
