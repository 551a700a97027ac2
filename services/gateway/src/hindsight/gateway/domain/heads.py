"""Per-head fallbacks of a model family: what each head answers when no model did.

A ``Predict`` answer carries every head of :data:`hindsight.common.family.HEADS`. When no
scorer answers in time every head gets its conservative default; when a scorer answers
without a head, that head alone does. Defaults come from
:data:`~hindsight.common.family.FALLBACK_HEADS` and can be set per head in the settings.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from hindsight.common.family import FALLBACK_HEADS, HEADS, EntryStyle, Head, entry_style

__all__ = ["HeadDefaults", "missing_heads"]


@dataclass(frozen=True, slots=True)
class HeadDefaults:
    """The value each head answers when it falls back."""

    entry: float = FALLBACK_HEADS["entry"]
    """``conf_pat``: no edge."""
    risk: float = FALLBACK_HEADS["risk"]
    """``sl_katr``: a wide stop, in ATR."""
    rr: float = FALLBACK_HEADS["rr"]
    """``rr_target``: a fixed target, in R."""
    offset: float = FALLBACK_HEADS["offset"]
    """``offset_katr``: no offset (a STOP entry at the signal price)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.entry < 1.0:
            raise ValueError("entry fallback must be a probability in (0, 1)")
        if not (math.isfinite(self.risk) and self.risk > 0):
            raise ValueError("risk fallback must be a finite stop distance > 0 (ATR)")
        if not (math.isfinite(self.rr) and self.rr > 0):
            raise ValueError("rr fallback must be a finite target > 0 (R)")
        if not math.isfinite(self.offset):
            raise ValueError("offset fallback must be a finite offset (ATR)")

    def value(self, head: Head) -> float:
        """The default of one head."""
        return float(getattr(self, head))

    @property
    def entry_style(self) -> EntryStyle:
        """The entry style the offset default gives."""
        return entry_style(self.offset)


def missing_heads(answered: Collection[str]) -> list[Head]:
    """The family's heads that are not among ``answered``, in head order."""
    return [head for head in HEADS if head not in answered]
