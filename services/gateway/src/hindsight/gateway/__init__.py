"""Hindsight gateway: the trading engine's ``Scoring`` endpoint in front of the scorers."""

__all__: list[str] = []
