"""What a monthly report shows, read over HTTP: the registry's evaluation aggregates and the
drift gauges of the trainer (live ``signal.features``) and the scorer (scored requests)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from hindsight.common.registry_api import EvaluationReport

__all__ = ["DriftRow", "ReportData", "collect", "month_window", "parse_drift"]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_window(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` → [first instant of the month, first instant of the next) in UTC."""
    match = _MONTH.match(month)
    if not match or not 1 <= int(match[2]) <= 12:
        raise ValueError(f"--month must be YYYY-MM, got {month!r}")
    year, mon = int(match[1]), int(match[2])
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


@dataclass(frozen=True, slots=True)
class DriftRow:
    """One feature's drift numbers from one source (NaN where the source has none)."""

    source: str
    version: str
    feature: str
    psi: float
    missing_share: float = math.nan
    out_of_range_share: float = math.nan
    reference_missing_share: float = math.nan


@dataclass(slots=True)
class ReportData:
    """Everything the renderer needs."""

    model_name: str
    month: str
    evaluation: EvaluationReport
    drift: list[DriftRow] = field(default_factory=list)
    drift_rows: dict[str, float] = field(default_factory=dict)
    """Rows in each source's window."""
    notes: list[str] = field(default_factory=list)
    """What could not be read (shown in the report, never fatal)."""
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def parse_drift(text: str, model_name: str) -> tuple[list[DriftRow], dict[str, float]]:
    """Drift rows and window sizes of ``model_name`` in a /metrics page (trainer or scorer)."""
    samples = _samples(text)
    rows: list[DriftRow] = []
    windows: dict[str, float] = {}

    def mine(name: str) -> dict[str, float]:
        return {
            labels["feature"]: value
            for labels, value in samples.get(name, [])
            if labels.get("model") == model_name and "feature" in labels
        }

    trainer_psi = mine("hindsight_trainer_feature_psi")
    if trainer_psi:
        version = next(
            (
                labels.get("version", "")
                for labels, value in samples.get("hindsight_trainer_drift_reference_info", [])
                if labels.get("model") == model_name and value == 1
            ),
            "",
        )
        missing = mine("hindsight_trainer_feature_missing_share")
        out_of_range = mine("hindsight_trainer_feature_out_of_range_share")
        reference = mine("hindsight_trainer_feature_reference_missing_share")
        for feature, psi in sorted(trainer_psi.items()):
            rows.append(
                DriftRow(
                    "live signals (trainer)",
                    version,
                    feature,
                    psi,
                    missing.get(feature, math.nan),
                    out_of_range.get(feature, math.nan),
                    reference.get(feature, math.nan),
                )
            )
        for labels, value in samples.get("hindsight_trainer_drift_window_rows", []):
            if labels.get("model") == model_name:
                windows["live signals (trainer)"] = value
    for labels, value in samples.get("hindsight_scorer_feature_psi", []):
        if labels.get("model") == model_name:
            rows.append(
                DriftRow(
                    f"scored requests (scorer {labels.get('version', '')})",
                    labels.get("version", ""),
                    labels.get("feature", ""),
                    value,
                )
            )
    for labels, value in samples.get("hindsight_scorer_drift_window_rows", []):
        if labels.get("model") == model_name:
            windows[f"scored requests (scorer {labels.get('version', '')})"] = value
    return rows, windows


def collect(
    *,
    registry_url: str,
    model_name: str,
    month: str,
    metrics_urls: list[str],
    timeout: float = 30.0,
) -> ReportData:
    """Read the registry's evaluation (required) and each /metrics URL (best effort)."""
    start, end = month_window(month)
    with httpx.Client(timeout=timeout) as client:
        response = client.get(
            f"{registry_url.rstrip('/')}/v1/models/{model_name}/evaluation",
            params={"from": start.isoformat(), "to": end.isoformat()},
        )
        response.raise_for_status()
        try:
            evaluation = EvaluationReport.model_validate_json(response.content)
        except ValidationError as exc:
            raise ValueError(f"the registry's evaluation cannot be read: {exc}") from exc
        data = ReportData(model_name, month, evaluation)
        for url in metrics_urls:
            try:
                page = client.get(url)
                page.raise_for_status()
            except httpx.HTTPError as exc:
                data.notes.append(f"{url}: not readable ({type(exc).__name__}: {exc})")
                continue
            rows, windows = parse_drift(page.text, model_name)
            data.drift.extend(rows)
            data.drift_rows.update(windows)
            if not rows:
                data.notes.append(f"{url}: no drift gauges for {model_name}")
    return data
