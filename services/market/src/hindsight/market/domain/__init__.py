"""Pure logic of the market service: bars, integrity rules, indicators, liquidity clusters
and the Back-Labeler's labels. numpy and the standard library only; no I/O."""

__all__: list[str] = []
