"""Pure logic of the gateway: circuit breaker, routing table, fallback policy, budget."""

__all__: list[str] = []
