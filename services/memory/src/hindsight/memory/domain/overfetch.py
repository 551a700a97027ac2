"""Filtered top-k from unfiltered nearest neighbours, when that is provably the same answer.

Ask the index for the ``asked`` nearest records without a filter, then walk them in rank
order keeping those the filter matches. Once ``need`` match, they are the filtered top
``need``: a better-ranked matching record would itself be among the candidates. If the
index returned fewer than asked, it returned every record it holds, so the matches are
complete even when fewer than ``need``. Otherwise the caller falls back to a filtered
query in the index.

Metadata is what costs (tens of µs per record in Chroma, ids and distances are cheap), so
it is read in chunks sized from the match rate seen so far, and the walk gives up early
when the rate says the candidates will not hold enough matches.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["MAX_CHUNK", "FallbackMemory", "OverfetchWalk", "candidate_count"]

# Chroma's get(ids=…) slows down sharply past a few hundred ids (measured: 200 ids
# ~8 ms, 400 ids ~40 ms), so a chunk never asks for more.
MAX_CHUNK = 200


def candidate_count(need: int, *, factor: int, cap: int) -> int:
    """How many unfiltered neighbours to ask for; 0 when over-fetching is off."""
    if factor <= 0 or need <= 0:
        return 0
    return max(need, min(need * factor, cap))


@dataclass(slots=True)
class OverfetchWalk:
    """The state of one walk over ``found`` ranked candidates (of ``asked``)."""

    need: int
    asked: int
    found: int
    read: int = 0
    chosen: list[int] = field(default_factory=list)

    @property
    def exhaustive(self) -> bool:
        """The index returned everything it holds (fewer than asked)."""
        return self.found < self.asked

    @property
    def done(self) -> bool:
        """The chosen candidates are the exact filtered answer."""
        return len(self.chosen) >= self.need or (self.exhaustive and self.read >= self.found)

    @property
    def selective(self) -> bool:
        """Not done, and at the rate seen even every candidate would give under half of
        what is needed: a filter worth sending straight to the fallback next time."""
        rate = (len(self.chosen) + 1) / (self.read + 2)
        return not self.done and rate * self.found < self.need / 2

    def next_chunk(self) -> range | None:
        """Positions whose metadata to read next; None: done, or give up (fall back)."""
        if self.done or self.read >= self.found:
            return None
        missing = self.need - len(self.chosen)
        left = self.found - self.read
        if self.read == 0:
            size = 2 * self.need  # most filters in practice keep a good share
        else:
            # Laplace's rule: a chunk without matches does not mean a rate of zero.
            rate = (len(self.chosen) + 1) / (self.read + 2)
            if not self.exhaustive and rate * left < missing / 2:
                return None  # unlikely to find enough here: the filtered query is cheaper
            size = math.ceil(1.25 * missing / rate)
        size = max(min(size, MAX_CHUNK, left), 1)
        return range(self.read, self.read + size)

    def feed(self, positions: range, matched: list[bool]) -> None:
        """Record which of ``positions`` (all read) matched the filter."""
        for position, hit in zip(positions, matched, strict=True):
            if hit and len(self.chosen) < self.need:
                self.chosen.append(position)
        self.read = positions.stop


class FallbackMemory:
    """Filters just found selective skip the over-fetch for their next few queries.

    A selective filter cannot be told from a common one by its first candidates, so each
    attempt reads hundreds of records' metadata in vain before the fallback; the same
    filter tends to come again (a tool's loop, a backtest), so remember it for a while.
    A common filter that missed narrowly is not remembered: its next try likely hits.
    It only chooses the path, never the answer.
    """

    def __init__(self, *, skip: int = 16, size: int = 1024) -> None:
        self.skip = skip
        self.size = size
        self._left: OrderedDict[str, int] = OrderedDict()

    def should_try(self, key: str) -> bool:
        """Whether to over-fetch for this filter now (counts one skipped query if not)."""
        left = self._left.get(key)
        if left is None:
            return True
        if left <= 1:
            del self._left[key]
        else:
            self._left[key] = left - 1
        return False

    def record(self, key: str, *, selective: bool) -> None:
        """The outcome of an over-fetch attempt for this filter."""
        if not selective:
            self._left.pop(key, None)
            return
        self._left[key] = self.skip
        self._left.move_to_end(key)
        while len(self._left) > self.size:
            self._left.popitem(last=False)
