"""Names the command line needs without importing the heavy modules (pandas, grpc)."""

__all__ = ["DATA_SETS"]

DATA_SETS: tuple[str, ...] = ("eurusd", "goog", "synthetic")
"""The data sets the replay can play."""
