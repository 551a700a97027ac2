"""Typed records at the registry's boundaries: stored JSON in, API JSON and events out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from hindsight.registry import domain
from hindsight.registry.domain import ArmMetrics, ExperimentKind
from hindsight.registry.events import ab_completed
from hindsight.registry.http_api import build_router
from hindsight.registry.schemas import VersionDetail, VersionPublic
from hindsight.registry.storage import ExperimentRecord, VersionRecord, VersionWithCard

pytestmark = pytest.mark.unit

AT = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
GATES = [
    {"name": "test_rows", "passed": True, "value": 3000.0, "threshold": 200, "reason": "ok"},
    {"name": "recommendation", "passed": False, "value": None, "threshold": "not REJECT",
     "reason": "no recommendation"},
]  # fmt: skip


def _version_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model_name": "m",
        "version": "v1",
        "stage": "candidate",
        "training_run_id": "run-v1",
        "created_at": AT,
        "registered_at": AT,
        "stage_changed_at": AT,
        "artifact_uri": "models/m/v1",
        "sha256": "a" * 64,
        "headline": json.dumps({"test_roc_auc": 0.7, "recommendation": "PROMOTE"}),
        "gates": json.dumps(GATES),
        "gates_passed": False,
        "refused_reason": None,
    }
    row.update(overrides)
    return row


def test_a_version_keeps_the_api_field_names_order_and_stored_numbers() -> None:
    record = VersionRecord.of(_version_row(), "headline", "gates")
    body = json.loads(VersionPublic.of(record).model_dump_json())
    assert list(body) == [
        "model_name",
        "version",
        "stage",
        "training_run_id",
        "created_at",
        "registered_at",
        "stage_changed_at",
        "artifact_uri",
        "sha256",
        "gates",
        "gates_passed",
        "refused_reason",
        "metrics",
        "recommendation",
        "kind",
    ]
    assert body["kind"] == "model"
    assert body["gates"] == GATES
    text = VersionPublic.of(record).model_dump_json()
    assert '"value":3000.0' in text and '"threshold":200,' in text  # int stays int
    assert body["metrics"] == {"test_roc_auc": 0.7, "recommendation": "PROMOTE"}
    assert body["recommendation"] == "PROMOTE"
    assert body["created_at"] == "2026-01-02T03:04:05.006000Z"


def test_a_refused_version_has_empty_metrics_and_a_null_card() -> None:
    row = _version_row(stage="refused", headline="{}", gates="[]", card=None)
    row["refused_reason"] = "sha256 mismatch"
    body = json.loads(
        VersionDetail.of_carded(VersionWithCard.of(row, "headline", "gates")).model_dump_json()
    )
    assert body["metrics"] == {} and body["recommendation"] is None
    assert body["card"] is None and body["gates"] == []
    assert list(body)[-4:] == ["metrics", "recommendation", "kind", "card"]


def _experiment(**overrides: Any) -> ExperimentRecord:
    values: dict[str, Any] = {
        "experiment_id": "exp-1",
        "model_name": "m",
        "kind": "ab",
        "control_version": "v1",
        "candidate_version": "v2",
        "candidate_share": 0.5,
        "min_samples_per_arm": 2,
        "alpha": 0.05,
        "auto_promote": False,
        "state": "active",
        "decision": None,
        "winner": None,
        "p_value": None,
        "result": None,
        "promotion": None,
        "started_at": AT,
        "started_by": "api:admin",
        "ended_at": None,
        "ended_by": None,
        "end_reason": None,
    }
    values.update(overrides)
    return ExperimentRecord.of(values, "result")


def test_a_stored_result_reads_back_as_written() -> None:
    result = {
        "per_arm": {
            "control": {"version": "v1", "n": 3, "wins": 1, "win_rate": 1 / 3, "mean_p": 0.5,
                        "roc_auc": None, "brier": 0.25, "log_loss": 0.69, "ece": 0.1},
        },
        "test": {"decision": "inconclusive", "winner": None, "p_value": None, "statistic": None,
                 "brier_difference": None, "reason": "below the minimum sample"},
    }  # fmt: skip
    experiment = _experiment(state="completed", decision="inconclusive", result=json.dumps(result))
    assert experiment.kind is ExperimentKind.AB
    assert json.loads(experiment.model_dump_json())["result"] == result


def _metrics(n: int, wins: int, brier: float | None) -> ArmMetrics:
    return ArmMetrics(n, wins, wins / n if n else None, 0.5, None, brier, None, None)


def test_ab_completed_is_built_once_with_its_extras() -> None:
    verdict = domain.TestDecision("promote", "candidate", 0.01, -2.5, -0.02, "candidate better")
    per_arm = {"control": _metrics(10, 4, 0.25), "candidate": _metrics(12, 7, 0.2)}
    event = ab_completed(_experiment(), verdict, per_arm, winner="v2")
    body = json.loads(event.to_json_bytes())
    assert body["decision"] == "promote" and body["winner"] == "v2" and body["n"] == 22
    assert body["per_arm"]["control"] == {"n": 10.0, "wins": 4.0, "win_rate": 0.4,
                                          "mean_p": 0.5, "brier": 0.25}  # fmt: skip
    assert body["kind"] == "ab" and body["arms"] == {"control": "v1", "candidate": "v2"}
    assert "cancelled" not in body and body["source"] == "registry"

    cancelled = json.loads(
        ab_completed(_experiment(), verdict, per_arm, winner=None, cancelled=True).to_json_bytes()
    )
    assert cancelled["decision"] == "keep" and "winner" not in cancelled
    assert cancelled["cancelled"] is True and cancelled["p_value"] == 0.01


def test_every_route_declares_its_response_model() -> None:
    app = FastAPI()
    app.include_router(build_router(None, None, None, None, admin_token=SecretStr("t")))  # type: ignore[arg-type]
    spec = app.openapi()
    routes = [(m, p, op) for p, ops in spec["paths"].items() for m, op in ops.items()]
    assert len(routes) == 20
    for method, path, op in routes:
        ok = next(code for code in op["responses"] if code.startswith("2"))
        schema = op["responses"][ok]["content"]["application/json"]["schema"]
        assert schema.get("$ref") or schema.get("items", {}).get("$ref"), (method, path)
