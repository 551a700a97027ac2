"""Labels: what a label record holds, agreement with the LLM, queue status."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from hindsight.common.events import format_utc

__all__ = [
    "ACTION_LABELS",
    "LABELS",
    "JsonScalar",
    "STATUSES",
    "Label",
    "LabelRecord",
    "Status",
    "agreement_rate",
    "in_review",
    "is_disagreement",
    "llm_agreed",
    "status_of",
]

Label = Literal["approved", "rejected", "review"]
Status = Literal["unlabeled", "labeled", "review"]
LABELS: tuple[str, ...] = ("approved", "rejected", "review")
STATUSES: tuple[str, ...] = ("unlabeled", "labeled", "review")
JsonScalar = str | int | float | bool | None
ACTION_LABELS = {"approve": "approved", "reject": "rejected", "review": "review"}


def llm_agreed(label: str, suggestion_label: str | None) -> bool | None:
    """``label == suggestion`` when there is a suggestion, else ``None``."""
    return None if suggestion_label is None else label == suggestion_label


def is_disagreement(label: str | None, suggestion_label: str | None) -> bool:
    """A saved label that differs from the LLM's suggestion (flagged for review)."""
    return label is not None and suggestion_label is not None and label != suggestion_label


def in_review(label: str | None, suggestion_label: str | None) -> bool:
    """In the review queue: labelled ``review``, or a label that disagrees with the LLM."""
    return label == "review" or is_disagreement(label, suggestion_label)


def status_of(label: str | None) -> Status:
    """Queue status of a trade from its current label."""
    if label is None:
        return "unlabeled"
    return "review" if label == "review" else "labeled"


def agreement_rate(agreed: Iterable[bool | None]) -> float | None:
    """Share of labels agreeing with the suggestion, over labels that had one."""
    known = [a for a in agreed if a is not None]
    return sum(known) / len(known) if known else None


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelRecord:
    """One label as written to ``labels/{trade_id}_label.json``, the table and the event."""

    trade_id: str
    label: Label
    labeler_id: str
    timestamp: datetime
    quality_grade: str | None = None
    user_comment: str | None = None
    llm_agreed: bool | None = None
    screenshot: str | None = None
    chroma_vector_id: str | None = None

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")

    def to_dict(self) -> dict[str, JsonScalar]:
        """The file's JSON object (the export's row)."""
        return {
            "trade_id": self.trade_id,
            "screenshot": self.screenshot,
            "label": self.label,
            "quality_grade": self.quality_grade,
            "user_comment": self.user_comment,
            "llm_agreed": self.llm_agreed,
            "labeler_id": self.labeler_id,
            "timestamp": format_utc(self.timestamp),
            "chroma_vector_id": self.chroma_vector_id,
        }
