"""Documents → overlapping chunks of about ``size`` characters, cut at natural breaks."""

from __future__ import annotations

import re

__all__ = ["chunk_text", "normalise_text"]

_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", "; ", ", ", " ")


def normalise_text(text: str) -> str:
    """Unify line ends, drop trailing spaces and runs of blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [re.sub(r"[ \t\f\v]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _cut(text: str, start: int, end: int, minimum: int) -> int:
    """The best break in ``text[minimum:end]`` (end of the chunk), else ``end``."""
    for mark in _BREAKS:
        found = text.rfind(mark, minimum, end)
        if found != -1:
            return found + len(mark)
    return end


def chunk_text(text: str, *, size: int = 800, overlap: int = 120) -> list[str]:
    """Chunks of at most ``size`` characters; consecutive chunks share ~``overlap``.

    Chunks end at a paragraph, line, sentence or word break where one lies in the last
    half of the window; the next chunk starts ``overlap`` characters earlier, moved
    forward to a word start so words are not split.
    """
    if size <= 0:
        raise ValueError("size must be positive")
    if not 0 <= overlap < size:
        raise ValueError("overlap must be in [0, size)")
    text = normalise_text(text)
    if not text:
        return []
    chunks: list[str] = []
    start = 0
    n = len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            end = _cut(text, start, end, start + size // 2)
        chunk = text[start:end].strip()
        if chunk:
            chunks.append(chunk)
        if end >= n:
            break
        next_start = max(end - overlap, start + 1)
        # Move to the start of a word so the overlap does not begin mid-word.
        while 0 < next_start < end and not text[next_start - 1].isspace():
            next_start += 1
        start = next_start if next_start < end else end
    return chunks
