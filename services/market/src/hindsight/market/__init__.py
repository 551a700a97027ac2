"""Hindsight market: bars, derived series, liquidity clusters and the Back-Labeler."""
