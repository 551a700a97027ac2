"""Plain-text output for people: aligned tables, secrets masked."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

__all__ = ["format_table", "mask_url"]


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, indent: int = 2
) -> str:
    """Columns aligned on the widest cell; ``None`` shows as ``-``."""
    cells = [[str(h) for h in headers]] + [
        ["-" if cell is None else str(cell) for cell in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    pad = " " * indent
    return "\n".join(
        pad + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for printing and state files)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
