"""Contract tests of the event models: what upstream tools send must parse, bad input must
name its field, extras must survive, and idempotency keys must be docs/events.md's."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from hindsight.common.errors import InvalidInputError
from hindsight.common.events import (
    EVENT_TYPES,
    SUBJECTS,
    AbCompleted,
    EmbeddingCreated,
    Event,
    InvalidEventError,
    JsonCreated,
    LabelSaved,
    ModelDeployed,
    PngCreated,
    PredictionLogged,
    SignalFeatures,
    SignalOutcome,
    TrainingCompleted,
    TrainingRequested,
    dlq_subject,
    format_validation_error,
    parse_event,
)

pytestmark = pytest.mark.unit

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ENVELOPE = {"schema_version": 1, "occurred_at": "2024-05-01T12:00:00Z"}

# subject -> (a realistic event as an upstream tool would send it, its idempotency key)
GOOD: dict[str, tuple[dict[str, Any], str]] = {
    "png.created": (
        {
            **ENVELOPE,
            "source": "chart-renderer",
            "file_path": "/data/charts/run-42/EURUSD_H1_trade-7.png",
            "run_id": "run-42",
            "trade_id": "trade-7",
            "setup_id": "breakout-retest",
            "rule_version": "v3.2",
            "symbol": "EURUSD",
            "timeframe": "H1",
            "image_type": "annotated",
            "author": "renderer@host-1",
        },
        "/data/charts/run-42/EURUSD_H1_trade-7.png",
    ),
    "json.created": (
        {
            **ENVELOPE,
            "source": "llm-vision-adapter",
            "doc_type": "llm_suggestion",
            "payload": {"verdict": "approve", "confidence": 0.82, "reasons": ["clean retest"]},
            "run_id": "run-42",
            "trade_id": "trade-7",
            "key_fields": ["verdict", "reasons"],
        },
        hashlib.sha256(
            b'{"confidence":0.82,"reasons":["clean retest"],"verdict":"approve"}'
        ).hexdigest(),
    ),
    "signal.features": (
        {
            **ENVELOPE,
            "source": "rule-executor",
            "signal_id": "sig-2024-05-01-0007",
            "symbol": "EURUSD",
            "timeframe": "H1",
            "side": "buy",
            "ts": "2024-05-01T11:59:58.250+00:00",
            "features": {"rsi": 61.5, "atr": 0.0012, "trend_h4": 1, "volume_z": None},
            "feature_schema_version": 3,
            "entry_price": 1.0712,
            "run_id": "live",
            "rule_version": "v3.2",
        },
        "sig-2024-05-01-0007",
    ),
    "signal.outcome": (
        {
            **ENVELOPE,
            "source": "backtester",
            "signal_id": "sig-2024-05-01-0007",
            "closed_at": "2024-05-01T15:30:00Z",
            "result": "win",
            "entry_price": 1.0712,
            "exit_price": 1.0748,
            "pnl": 36.0,
            "realised_r": 1.8,
            "mfe": 2.1,
            "mae": -0.4,
        },
        "sig-2024-05-01-0007",
    ),
    "label.saved": (
        {
            **ENVELOPE,
            "source": "labeling",
            "trade_id": "trade-7",
            "label": "approved",
            "labeler_id": "alice",
            "quality_grade": "A",
            "user_comment": "textbook retest",
            "llm_agreed": True,
            "screenshot": "/data/charts/run-42/EURUSD_H1_trade-7.png",
            "chroma_vector_id": "img-trade-7",
        },
        "trade-7:alice:2024-05-01T12:00:00Z",
    ),
    "embedding.created": (
        {
            **ENVELOPE,
            "source": "embedder",
            "vector_id": "img-trade-7",
            "collection": "trade_cases",
            "modality": "image",
            "model": "clip-vit-b-32",
            "embedding": [0.012, -0.5, 0.25, 1],
            "metadata": {
                "id": "img-trade-7",
                "file_path": "/data/charts/run-42/EURUSD_H1_trade-7.png",
                "run_id": "run-42",
                "trade_id": "trade-7",
                "setup_id": "breakout-retest",
                "rule_version": None,
                "timestamp": "2024-05-01T12:00:00Z",
                "type": "image",
                "source": "chart-renderer",
                "image_type": "annotated",
            },
            "thumbnail_b64": "iVBORw0KGgo=",
        },
        "img-trade-7",
    ),
    "training.requested": (
        {
            **ENVELOPE,
            "source": "hindsight-cli",
            "model_name": "setup_success",
            "mode": "incremental",
            "reason": "500 new labels",
            "requested_by": "bob",
            "request_id": "0b9c5e1f3a4d4f0e8d6c2b1a09876543",
        },
        "0b9c5e1f3a4d4f0e8d6c2b1a09876543",
    ),
    "training.completed": (
        {
            **ENVELOPE,
            "source": "trainer",
            "training_run_id": "tr-20240501-1200",
            "model_name": "setup_success",
            "status": "completed",
            "version": "2024.05.01-1",
            "artifact_uri": "models/setup_success/2024.05.01-1/",
            "sha256": SHA,
            "metrics": {"auc": 0.71, "brier": 0.2, "calibration": {"ece": 0.03}},
            "feature_names": ["rsi", "atr", "trend_h4"],
            "feature_schema_version": 3,
            "dataset_size": 12840,
            "data_time_range": {"start": "2023-01-01T00:00:00Z", "end": "2024-04-30T23:59:59Z"},
            "duration_s": 84.2,
        },
        "tr-20240501-1200",
    ),
    "model.deployed": (
        {
            **ENVELOPE,
            "source": "registry",
            "model_name": "setup_success",
            "version": "2024.05.01-1",
            "stage": "canary",
            "artifact_uri": "models/setup_success/2024.05.01-1/",
            "sha256": SHA,
            "experiment_id": "exp-17",
            "traffic": {"2024.04.20-3": 0.9, "2024.05.01-1": 0.1},
            "previous_version": "2024.04.20-3",
        },
        "setup_success:2024.05.01-1:canary",
    ),
    "prediction.logged": (
        {
            **ENVELOPE,
            "source": "gateway",
            "prediction_id": "pred-8f2c",
            "signal_id": "sig-2024-05-01-0007",
            "model_version": "2024.05.01-1",
            "p_success": 0.64,
            "fallback": False,
            "experiment_id": "exp-17",
            "arm": "challenger",
            "latency_ms": 3.4,
        },
        "pred-8f2c",
    ),
    "ab.completed": (
        {
            **ENVELOPE,
            "source": "registry",
            "experiment_id": "exp-17",
            "model_name": "setup_success",
            "decision": "promote",
            "winner": "2024.05.01-1",
            "p_value": 0.012,
            "per_arm": {
                "champion": {"win_rate": 0.52, "brier": 0.21},
                "challenger": {"win_rate": 0.57, "brier": 0.19},
            },
            "n": 1430,
        },
        "exp-17",
    ),
    "bar.closed": (
        {
            **ENVELOPE,
            "source": "bar-feed",
            "symbol": "EURUSD",
            "timeframe": "1h",
            "ts": "2024-05-01T11:00:00+00:00",
            "open": 1.0712,
            "high": 1.0731,
            "low": 1.0705,
            "close": 1.0728,
            "volume": 1830.0,
            "trades": 412,
        },
        "EURUSD:1h:2024-05-01T11:00:00Z",
    ),
    "signal.labeled": (
        {
            **ENVELOPE,
            "source": "market",
            "signal_id": "sig-42",
            "label_spec": "0123456789abcdef",
            "horizon_bars": 6,
            "runup_r": 1.4,
            "drawdown_r": -0.6,
            "realised_r": 1.0,
            "y_entry": 1,
            "t_hit_tp": 180.0,
            "t_hit_sl": None,
            "liquidity_cluster": "H",
        },
        "sig-42:0123456789abcdef",
    ),
}

# subject -> (how to break a good example, the field the error must name)
Breaker = Callable[[dict[str, Any]], None]
BAD: dict[str, list[tuple[Breaker, str]]] = {
    "png.created": [
        (lambda e: e.pop("file_path"), "file_path"),
        (lambda e: e.update(run_id=42), "run_id"),
        (lambda e: e.update(image_type="thumbnail"), "image_type"),
    ],
    "json.created": [
        (lambda e: e.update(doc_type="essay"), "doc_type"),
        (lambda e: e.update(payload=["not", "an", "object"]), "payload"),
        (lambda e: e.pop("run_id"), "run_id"),
    ],
    "signal.features": [
        (lambda e: e.update(side="long"), "side"),
        (lambda e: e["features"].update(rsi="abc"), "features.rsi"),
        (lambda e: e.update(features={}), "features"),
        (lambda e: e.update(feature_schema_version="3"), "feature_schema_version"),
    ],
    "signal.outcome": [
        (lambda e: e.pop("closed_at"), "closed_at"),
        (lambda e: e.update(result="tie"), "result"),
        (lambda e: e.update(exit_price=0), "exit_price"),
    ],
    "label.saved": [
        (lambda e: e.update(label="maybe"), "label"),
        (lambda e: e.pop("labeler_id"), "labeler_id"),
        (lambda e: e.update(llm_agreed="yes"), "llm_agreed"),
    ],
    "embedding.created": [
        (lambda e: e.update(modality="audio"), "modality"),
        (lambda e: e.update(embedding=[]), "embedding"),
        (lambda e: e["metadata"].pop("trade_id"), "metadata"),
        (lambda e: e["metadata"].update(extra={"nested": 1}), "metadata.extra"),
    ],
    "training.requested": [
        (lambda e: e.update(mode="partial"), "mode"),
        (lambda e: e.pop("model_name"), "model_name"),
    ],
    "training.completed": [
        (lambda e: e.update(status="done"), "status"),
        (lambda e: e.update(sha256="ABC"), "sha256"),
        (lambda e: e.update(dataset_size=-1), "dataset_size"),
        (
            lambda e: e.update(
                data_time_range={"start": "2024-05-01T00:00:00Z", "end": "2024-04-01T00:00:00Z"}
            ),
            "data_time_range",
        ),
    ],
    "model.deployed": [
        (lambda e: e.update(stage="staging"), "stage"),
        (lambda e: e.pop("sha256"), "sha256"),
        (lambda e: e["traffic"].update({"2024.05.01-1": -0.1}), "traffic.2024.05.01-1"),
    ],
    "prediction.logged": [
        (lambda e: e.update(p_success=1.5), "p_success"),
        (lambda e: e.pop("model_version"), "model_version"),
        (lambda e: e.update(fallback="false"), "fallback"),
    ],
    "ab.completed": [
        (lambda e: e.update(decision="rollback"), "decision"),
        (lambda e: e.update(p_value=True), "p_value"),
        (lambda e: e.update(n=1.5), "n"),
    ],
    "bar.closed": [
        (lambda e: e.update(high=float("nan")), "high"),
        (lambda e: e.update(volume="12"), "volume"),
        (lambda e: e.pop("ts"), "ts"),
        (lambda e: e.update(trades=-1), "trades"),
    ],
    "signal.labeled": [
        (lambda e: e.update(label_spec="XYZ"), "label_spec"),
        (lambda e: e.update(y_entry=2), "y_entry"),
        (lambda e: e.update(t_hit_tp=-1.0), "t_hit_tp"),
        (lambda e: e.update(liquidity_cluster="X"), "liquidity_cluster"),
    ],
}

BAD_CASES = [
    pytest.param(subject, breaker, field, id=f"{subject}-{field}-{index}")
    for subject, cases in BAD.items()
    for index, (breaker, field) in enumerate(cases)
]


def good(subject: str) -> dict[str, Any]:
    """A fresh deep copy of the subject's good example."""
    event: dict[str, Any] = json.loads(json.dumps(GOOD[subject][0]))
    return event


def wire(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def rejected(subject: str, event: dict[str, Any]) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as info:
        parse_event(subject, wire(event))
    return info.value


def test_every_subject_has_a_model_and_examples() -> None:
    assert set(SUBJECTS) == set(EVENT_TYPES) == set(GOOD) == set(BAD)
    assert len(SUBJECTS) == 13
    for subject, model in EVENT_TYPES.items():
        assert model.subject == subject


@pytest.mark.parametrize("subject", SUBJECTS)
def test_good_example_parses_with_its_key(subject: str) -> None:
    event = parse_event(subject, wire(good(subject)))
    assert type(event) is EVENT_TYPES[subject]
    assert event.idempotency_key() == GOOD[subject][1]
    assert event.occurred_at == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(("subject", "breaker", "field"), BAD_CASES)
def test_bad_example_names_the_field(subject: str, breaker: Breaker, field: str) -> None:
    event = good(subject)
    breaker(event)
    error = rejected(subject, event)
    assert isinstance(error, InvalidInputError)
    assert error.subject == subject
    assert [e.field for e in error.errors] == [field]
    assert error.field == field
    assert str(error).startswith(f"{subject}: {field}: ")
    assert "\n" not in str(error)


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("field", ["schema_version", "occurred_at", "source"])
def test_envelope_fields_are_required(subject: str, field: str) -> None:
    event = good(subject)
    del event[field]
    assert str(rejected(subject, event)) == f"{subject}: {field}: Field required"


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize(
    ("field", "value"),
    [("schema_version", 0), ("schema_version", True), ("schema_version", "1"), ("source", "")],
)
def test_envelope_fields_are_checked(subject: str, field: str, value: object) -> None:
    event = good(subject)
    event[field] = value
    assert [e.field for e in rejected(subject, event).errors] == [field]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_unknown_fields_survive_a_round_trip(subject: str) -> None:
    event = good(subject)
    event["x_upstream_trace"] = {"span": "ab12", "hops": [1, 2]}
    event["x_note"] = None
    parsed = parse_event(subject, wire(event))
    again = parse_event(subject, parsed.to_json_bytes())
    assert again.model_extra == {
        "x_upstream_trace": {"span": "ab12", "hops": [1, 2]},
        "x_note": None,
    }
    assert again == parsed
    assert again.idempotency_key() == parsed.idempotency_key()
    assert json.loads(again.to_json_bytes())["x_upstream_trace"] == event["x_upstream_trace"]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_serialised_form_is_compact_utc_json(subject: str) -> None:
    event = good(subject)
    event["occurred_at"] = "2024-05-01T14:00:00+02:00"
    data = parse_event(subject, wire(event)).to_json_bytes()
    body = json.loads(data)
    assert data == json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert body["occurred_at"] == "2024-05-01T12:00:00Z"
    assert None not in [v for k, v in body.items() if k != "model_version"]


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("value", ["2024-05-01T12:00:00", "2024-05-01", 1714564800, "yesterday"])
def test_occurred_at_needs_an_rfc3339_instant_with_timezone(subject: str, value: object) -> None:
    event = good(subject)
    event["occurred_at"] = value
    assert [e.field for e in rejected(subject, event).errors] == ["occurred_at"]


@pytest.mark.parametrize(
    ("subject", "field"),
    [("signal.features", "ts"), ("signal.outcome", "closed_at")],
)
def test_naive_event_times_are_rejected(subject: str, field: str) -> None:
    event = good(subject)
    event[field] = "2024-05-01T11:59:58"
    error = rejected(subject, event)
    assert str(error) == f"{subject}: {field}: Input should have timezone info"


def test_times_are_normalised_to_utc() -> None:
    event = good("signal.features")
    event["ts"] = "2024-05-01T13:59:58.25+02:00"
    parsed = parse_event("signal.features", wire(event))
    assert isinstance(parsed, SignalFeatures)
    assert parsed.ts == datetime(2024, 5, 1, 11, 59, 58, 250000, tzinfo=UTC)
    assert parsed.ts.tzinfo is UTC
    assert json.loads(parsed.to_json_bytes())["ts"] == "2024-05-01T11:59:58.250000Z"


@pytest.mark.parametrize(
    "raw_value", ["NaN", "Infinity", "-Infinity", "true", "false", '"61.5"', '"abc"', "[1]"]
)
def test_features_must_be_finite_numbers(raw_value: str) -> None:
    data = wire(good("signal.features")).replace(b'"rsi": 61.5', b'"rsi": ' + raw_value.encode())
    assert raw_value.encode() in data
    with pytest.raises(InvalidEventError) as info:
        parse_event("signal.features", data)
    assert [e.field for e in info.value.errors] == ["features.rsi"]


def test_features_accept_ints_and_null() -> None:
    parsed = parse_event("signal.features", wire(good("signal.features")))
    assert isinstance(parsed, SignalFeatures)
    assert parsed.features == {"rsi": 61.5, "atr": 0.0012, "trend_h4": 1.0, "volume_z": None}


def test_every_failing_field_is_named_on_one_line() -> None:
    event = good("png.created")
    del event["file_path"]
    event["run_id"] = 42
    event["image_type"] = "thumb\nnail"
    error = rejected("png.created", event)
    assert str(error) == (
        "png.created: file_path: Field required; run_id: Input should be a valid string; "
        "image_type: Input should be 'original' or 'annotated'"
    )
    assert [(e.field, e.reason) for e in error.errors][0] == ("file_path", "Field required")


def test_error_message_stays_on_one_line_whatever_the_input() -> None:
    event = good("signal.features")
    event["features"]["rsi\r\nlag"] = "abc"
    with pytest.raises(InvalidEventError) as info:
        parse_event("signal.features", wire(event))
    # The key is bad too (a control character) and shown escaped (issue 13).
    assert str(info.value) == (
        "signal.features: features.rsi\\x0d\\x0alag.[key]: Input should not contain control "
        "characters (found U+000D at position 3); features.rsi\\x0d\\x0alag: Input should "
        "be a valid number"
    )
    payload_event = good("json.created")
    payload_event["payload"] = {"multi\nline": float("nan")}
    error = rejected("json.created", payload_event)
    assert "\n" not in str(error)
    assert str(error).startswith("json.created: payload: Input should be a finite number")


def test_format_validation_error_is_one_line() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        PngCreated.model_validate({"schema_version": 1})
    text = format_validation_error(info.value)
    assert "\n" not in text
    assert text.startswith("occurred_at: Field required; source: Field required; ")
    assert "file_path: Field required" in text
    assert "run_id: Field required" in text


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"[1, 2]", b'"png"', b"null", b'{"schema_version": 1', b"\xff\xfe"],
)
def test_bytes_that_are_not_a_json_object_are_invalid_events(data: bytes) -> None:
    with pytest.raises(InvalidEventError) as info:
        parse_event("png.created", data)
    assert info.value.field == "body"
    assert str(info.value).startswith("png.created: body: ")
    assert "\n" not in str(info.value)


def test_unknown_subject_is_invalid_input_naming_the_subject() -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_event("png.deleted", wire(good("png.created")))
    assert not isinstance(info.value, InvalidEventError)
    assert info.value.field == "subject"
    assert "png.deleted" in str(info.value)


@pytest.mark.parametrize("cls", [PngCreated, JsonCreated])
def test_record_time_is_ts_when_given_else_occurred_at(cls: type[Event]) -> None:
    from hindsight.common.record_ids import record_time

    fields: dict[str, Any] = (
        {"file_path": "/c/a.png", "run_id": "r"}
        if cls is PngCreated
        else {"doc_type": "trade_meta", "payload": {"a": 1}, "run_id": "r"}
    )

    def parse(**extra: Any) -> PngCreated | JsonCreated:
        body = {**ENVELOPE, "source": "t", **fields, "occurred_at": "2025-01-02T03:04:05Z"}
        event = parse_event(cls.subject, json.dumps({**body, **extra}).encode())
        assert isinstance(event, PngCreated | JsonCreated)
        return event

    with_ts = parse(ts="2017-03-01T09:30:00+01:00")
    assert record_time(with_ts) == datetime(2017, 3, 1, 8, 30, tzinfo=UTC)
    assert json.loads(with_ts.to_json_bytes())["ts"] == "2017-03-01T08:30:00Z"
    without = parse()
    assert record_time(without) == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert "ts" not in json.loads(without.to_json_bytes())
    # Like every time field: RFC 3339 text with a timezone, nothing else.
    for bad in ("2017-03-01T09:30:00", 1488357000, "yesterday"):
        with pytest.raises(InvalidEventError, match="ts"):
            parse(ts=bad)


def test_json_created_key_ignores_payload_key_order() -> None:
    first = good("json.created")
    second = good("json.created")
    second["payload"] = dict(reversed(list(first["payload"].items())))
    assert list(first["payload"]) != list(second["payload"])
    keys = {parse_event("json.created", wire(e)).idempotency_key() for e in (first, second)}
    assert len(keys) == 1


def test_json_created_key_follows_the_payload_and_prefers_doc_id() -> None:
    event = good("json.created")
    base = parse_event("json.created", wire(event)).idempotency_key()
    event["payload"]["verdict"] = "reject"
    assert parse_event("json.created", wire(event)).idempotency_key() != base
    event["doc_id"] = "llm-suggestion-trade-7"
    assert parse_event("json.created", wire(event)).idempotency_key() == "llm-suggestion-trade-7"


def test_json_created_key_hashes_non_ascii_as_utf8() -> None:
    event = good("json.created")
    event["payload"] = {"note": "résumé ✓"}
    expected = hashlib.sha256('{"note":"résumé ✓"}'.encode()).hexdigest()
    assert parse_event("json.created", wire(event)).idempotency_key() == expected


def test_json_created_payload_numbers_must_be_finite() -> None:
    data = wire(good("json.created")).replace(b'"confidence": 0.82', b'"confidence": NaN')
    with pytest.raises(InvalidEventError) as info:
        parse_event("json.created", data)
    assert [e.field for e in info.value.errors] == ["payload"]
    assert "payload.confidence" in str(info.value)


def test_label_saved_key_changes_with_occurred_at() -> None:
    first = good("label.saved")
    corrected = good("label.saved")
    corrected["label"] = "rejected"
    corrected["occurred_at"] = "2024-05-01T12:00:30.5+00:00"
    keys = [parse_event("label.saved", wire(e)).idempotency_key() for e in (first, corrected)]
    assert keys == [
        "trade-7:alice:2024-05-01T12:00:00Z",
        "trade-7:alice:2024-05-01T12:00:30.500000Z",
    ]


def test_label_saved_key_survives_redelivery() -> None:
    event = LabelSaved.create(source="labeling", trade_id="t", label="review", labeler_id="bob")
    again = parse_event("label.saved", event.to_json_bytes())
    assert again.idempotency_key() == event.idempotency_key()


def test_model_deployed_key_joins_name_version_stage() -> None:
    event = good("model.deployed")
    event["stage"] = "production"
    assert parse_event("model.deployed", wire(event)).idempotency_key() == (
        "setup_success:2024.05.01-1:production"
    )


def test_prediction_logged_model_version_may_be_null_but_not_missing() -> None:
    event = good("prediction.logged")
    event["model_version"] = None
    event["fallback"] = True
    parsed = parse_event("prediction.logged", wire(event))
    assert isinstance(parsed, PredictionLogged)
    assert parsed.model_version is None
    assert json.loads(parsed.to_json_bytes())["model_version"] is None
    assert parse_event("prediction.logged", parsed.to_json_bytes()) == parsed


@pytest.mark.parametrize(("key", "value"), [("id", "other"), ("type", "text")])
def test_embedding_metadata_must_match_the_vector(key: str, value: str) -> None:
    event = good("embedding.created")
    event["metadata"][key] = value
    error = rejected("embedding.created", event)
    assert [e.field for e in error.errors] == ["metadata"]


def test_embedding_values_must_be_finite() -> None:
    data = wire(good("embedding.created")).replace(b"-0.5", b"NaN")
    with pytest.raises(InvalidEventError) as info:
        parse_event("embedding.created", data)
    assert [e.field for e in info.value.errors] == ["embedding.1"]


def test_training_requested_gets_a_request_id_when_absent() -> None:
    event = good("training.requested")
    del event["request_id"]
    first = parse_event("training.requested", wire(event))
    assert isinstance(first, TrainingRequested)
    assert len(first.request_id) == 32
    assert first.idempotency_key() == first.request_id
    assert parse_event("training.requested", first.to_json_bytes()) == first


def test_training_completed_minimal_failure_parses() -> None:
    event = {
        **ENVELOPE,
        "source": "trainer",
        "training_run_id": "tr-1",
        "model_name": "setup_success",
        "status": "failed",
        "error": "not enough labelled trades: 12 < 200",
    }
    parsed = parse_event("training.completed", wire(event))
    assert isinstance(parsed, TrainingCompleted)
    assert parsed.version is None
    assert json.loads(parsed.to_json_bytes()) == event


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (PngCreated, {"file_path": "/charts/a.png", "run_id": "r"}),
        (SignalOutcome, {"signal_id": "s", "closed_at": datetime(2024, 5, 1, tzinfo=UTC)}),
        (AbCompleted, {"experiment_id": "e", "model_name": "m", "decision": "keep"}),
    ],
)
def test_create_fills_the_envelope(model: type[Event], fields: dict[str, Any]) -> None:
    before = datetime.now(UTC)
    event = model.create(source="unit-test", **fields)
    assert event.schema_version == model.SCHEMA_VERSION == 1
    assert event.source == "unit-test"
    assert before <= event.occurred_at <= datetime.now(UTC)
    assert event.occurred_at.tzinfo is UTC
    assert parse_event(model.subject, event.to_json_bytes()) == event


def test_create_rejects_bad_fields_as_invalid_event() -> None:
    with pytest.raises(InvalidEventError) as info:
        ModelDeployed.create(
            source="registry", model_name="m", version="1", stage="live", artifact_uri="a"
        )
    assert [e.field for e in info.value.errors] == ["stage", "sha256"]


def test_create_refuses_naive_times() -> None:
    with pytest.raises(InvalidEventError) as info:
        SignalOutcome.create(source="bt", signal_id="s", closed_at=datetime(2024, 5, 1))
    assert info.value.field == "closed_at"


def test_event_models_are_distinct_and_keys_are_strings() -> None:
    assert len(set(EVENT_TYPES.values())) == len(EVENT_TYPES)
    for subject in SUBJECTS:
        assert isinstance(parse_event(subject, wire(good(subject))).idempotency_key(), str)
    assert {JsonCreated, LabelSaved, EmbeddingCreated} <= set(EVENT_TYPES.values())


@pytest.mark.parametrize("subject", SUBJECTS)
def test_dlq_subject(subject: str) -> None:
    assert dlq_subject(subject) == f"dlq.{subject}"


# --- limits of strings (docs/events.md, "Limits of strings") -----------------------------
# Issue 13: an 8 kB id or a NUL passed validation and then failed in PostgreSQL after every
# redelivery. Every string field now has a bounded length and a character set.

KB8 = "a" * 8192
Setter = Callable[[dict[str, Any], str], None]


def _set(*path: str | int) -> Setter:
    """Set the value at ``path`` of the event (creating nothing: the path must exist)."""

    def setter(event: dict[str, Any], value: str) -> None:
        node: Any = event
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return setter


def _key(*path: str) -> Setter:
    """Add ``value`` as a key of the object at ``path`` (its value copied from another)."""

    def setter(event: dict[str, Any], value: str) -> None:
        node: Any = event
        for part in path:
            node = node[part]
        node[value] = next(iter(node.values()))

    return setter


# (subject, the field the error must name, kind, how to put a value there)
IDS = [
    *[(subject, "source", _set("source")) for subject in SUBJECTS],
    *[
        ("png.created", f, _set(f))
        for f in ("run_id", "trade_id", "setup_id", "rule_version", "symbol", "timeframe", "author")
    ],
    *[("json.created", f, _set(f)) for f in ("run_id", "trade_id")],
    ("json.created", "doc_id", lambda e, v: e.update(doc_id=v)),
    ("json.created", "setup_id", lambda e, v: e.update(setup_id=v)),
    ("json.created", "rule_version", lambda e, v: e.update(rule_version=v)),
    ("json.created", "key_fields.0", _set("key_fields", 0)),
    *[
        ("signal.features", f, _set(f))
        for f in ("signal_id", "symbol", "timeframe", "run_id", "rule_version")
    ],
    ("signal.features", "trade_id", lambda e, v: e.update(trade_id=v)),
    ("signal.features", "setup_id", lambda e, v: e.update(setup_id=v)),
    ("signal.features", "features.*.[key]", _key("features")),
    ("signal.outcome", "signal_id", _set("signal_id")),
    *[
        ("label.saved", f, _set(f))
        for f in ("trade_id", "labeler_id", "quality_grade", "chroma_vector_id")
    ],
    ("embedding.created", "vector_id", _set("vector_id")),
    ("embedding.created", "model", _set("model")),
    ("embedding.created", "metadata.*.[key]", _key("metadata")),
    *[("training.requested", f, _set(f)) for f in ("model_name", "requested_by", "request_id")],
    *[("training.completed", f, _set(f)) for f in ("training_run_id", "model_name", "version")],
    ("training.completed", "feature_names.0", _set("feature_names", 0)),
    *[
        ("model.deployed", f, _set(f))
        for f in ("model_name", "version", "experiment_id", "previous_version")
    ],
    ("model.deployed", "deployment_id", lambda e, v: e.update(deployment_id=v)),
    ("model.deployed", "traffic.*.[key]", _key("traffic")),
    *[
        ("prediction.logged", f, _set(f))
        for f in ("prediction_id", "signal_id", "model_version", "experiment_id", "arm")
    ],
    *[("ab.completed", f, _set(f)) for f in ("experiment_id", "model_name", "winner")],
    ("ab.completed", "per_arm.*.[key]", _key("per_arm")),
    ("ab.completed", "per_arm.A.*.[key]", _key("per_arm", "A")),
]
PATHS = [
    ("png.created", "file_path", _set("file_path")),
    ("json.created", "file_path", lambda e, v: e.update(file_path=v)),
    ("label.saved", "screenshot", _set("screenshot")),
    ("training.completed", "artifact_uri", _set("artifact_uri")),
    ("model.deployed", "artifact_uri", _set("artifact_uri")),
]
TEXTS = [
    ("label.saved", "user_comment", _set("user_comment")),
    ("embedding.created", "document", lambda e, v: e.update(document=v)),
    ("embedding.created", "metadata.setup_id", _set("metadata", "setup_id")),
    ("training.requested", "reason", _set("reason")),
    ("training.completed", "error", lambda e, v: e.update(error=v)),
]
# JSON objects: NUL is refused in any key or string, anywhere in them.
JSON_VALUES = [
    ("json.created", "payload", _set("payload", "verdict")),
    ("json.created", "payload", _key("payload")),
    ("json.created", "payload", lambda e, v: e["payload"].update(deep={"list": ["ok", v]})),
    ("training.completed", "metrics", _set("metrics", "calibration", "method")),
    ("training.completed", "metrics", _key("metrics")),
]


def _params(rows: list[tuple[str, str, Setter]]) -> list[Any]:
    return [pytest.param(s, f, put, id=f"{s}-{f}") for s, f, put in rows]


def _named(error: InvalidEventError, field: str, value: str) -> None:
    """The error names ``field`` (``*`` stands for the shortened, escaped key)."""
    assert len(error.errors) == 1, error.errors
    got = error.errors[0].field
    if "*" in field:
        head, tail = field.split("*")
        assert got.startswith(head) and got.endswith(tail), got
        assert len(got) < len(head) + 80 and "\x00" not in got  # shortened, escaped
    else:
        assert got == field
    assert "\x00" not in str(error) and len(str(error)) < 1000  # fits a NATS header


def _issue13_reject(subject: str, put: Setter, value: str) -> InvalidEventError:
    event = good(subject)
    if subject == "ab.completed":
        event["per_arm"] = {"A": {"n": 1.0}}
    put(event, value)
    return rejected(subject, event)


def _issue13_accept(subject: str, put: Setter, value: str) -> Event:
    event = good(subject)
    if subject == "ab.completed":
        event["per_arm"] = {"A": {"n": 1.0}}
    put(event, value)
    return parse_event(subject, wire(event))


BAD_IDS = [KB8, "a" * 257, "id\x00x", "\x00", "line\nbreak", "del\x7f"]
BAD_PATHS = [KB8, "/a/b\x00.png", "/a/\nb.png"]


@pytest.mark.parametrize(
    ("subject", "field", "put", "value"),
    [
        pytest.param(s, f, put, v, id=f"{s}-{f}-{i}")
        for rows, values in ((IDS, BAD_IDS), (PATHS, BAD_PATHS))
        for s, f, put in rows
        for i, v in enumerate(values)
    ],
)
def test_ids_and_paths_are_bounded_and_free_of_control_characters(
    subject: str, field: str, put: Setter, value: str
) -> None:
    _named(_issue13_reject(subject, put, value), field, value)


@pytest.mark.parametrize(("subject", "field", "put"), _params(IDS))
def test_ids_of_256_characters_pass(subject: str, field: str, put: Setter) -> None:
    if field == "vector_id":  # metadata.id must follow it
        _issue13_accept(subject, lambda e, v: put(e, v) or _set("metadata", "id")(e, v), "é" * 256)
    else:
        _issue13_accept(subject, put, "é" * 256)


@pytest.mark.parametrize(("subject", "field", "put"), _params(PATHS))
def test_paths_of_4096_characters_pass(subject: str, field: str, put: Setter) -> None:
    _issue13_accept(subject, put, "/" + "p" * 4095)


@pytest.mark.parametrize(("subject", "field", "put"), _params(TEXTS))
@pytest.mark.parametrize("value", ["a" * (64 * 1024 + 1), "before\x00after"])
def test_free_text_is_bounded_and_free_of_nul(
    subject: str, field: str, put: Setter, value: str
) -> None:
    _named(_issue13_reject(subject, put, value), field, value)


@pytest.mark.parametrize(("subject", "field", "put"), _params(TEXTS))
def test_a_lone_surrogate_is_refused_on_the_wire_and_in_create(
    subject: str, field: str, put: Setter
) -> None:
    """PostgreSQL cannot store it (no UTF-8 form): JSON parsing refuses it on the wire, the
    model when a Python producer builds the event."""
    event = good(subject)
    put(event, "half \ud800 pair")
    with pytest.raises(InvalidEventError):
        parse_event(subject, json.dumps(event).encode())
    model = EVENT_TYPES[subject]
    fields = {k: v for k, v in event.items() if k != "source"}
    with pytest.raises(InvalidEventError) as info:
        model.create(source=event["source"], **fields)
    _named(info.value, field, "")


@pytest.mark.parametrize(("subject", "field", "put"), _params(TEXTS))
def test_free_text_of_8_kb_with_newlines_passes(subject: str, field: str, put: Setter) -> None:
    _issue13_accept(subject, put, ("x" * 99 + "\n") * 82)


@pytest.mark.parametrize(("subject", "field", "put"), _params(JSON_VALUES))
def test_json_objects_refuse_nul_in_any_key_or_string(
    subject: str, field: str, put: Setter
) -> None:
    error = _issue13_reject(subject, put, "nul\x00here")
    _named(error, field, "")
    assert "U+0000" in str(error)


@pytest.mark.parametrize(("subject", "field", "put"), _params(JSON_VALUES))
def test_json_objects_take_8_kb_strings(subject: str, field: str, put: Setter) -> None:
    _issue13_accept(subject, put, KB8)


def test_an_extra_field_with_nul_is_refused_naming_it() -> None:
    event = good("png.created")
    event["renderer_note"] = {"text": "a\x00b"}
    error = rejected("png.created", event)
    assert "renderer_note.text" in str(error) and "U+0000" in str(error)


@pytest.mark.parametrize("value", ["not base64!", "a\x00", "A" * (1024 * 1024 + 4)])
def test_thumbnails_are_bounded_base64(value: str) -> None:
    error = _issue13_reject("embedding.created", _set("thumbnail_b64"), value)
    _named(error, "thumbnail_b64", value)


def _string_nodes(schema: Any, defs: dict[str, Any], path: str) -> list[tuple[str, Any]]:
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _string_nodes(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, path)
        found = []
        if schema.get("type") == "string" and not {"enum", "const", "format"} & set(schema):
            found.append((path, schema))
        for key, value in schema.items():
            if key != "$defs":
                found += _string_nodes(value, defs, f"{path}/{key}")
        return found
    if isinstance(schema, list):
        return [n for i, item in enumerate(schema) for n in _string_nodes(item, defs, path)]
    return []


@pytest.mark.parametrize("subject", SUBJECTS)
def test_every_string_in_the_contract_has_a_maximum_length(subject: str) -> None:
    """A new string field without a limit fails here (and the catalog would show it)."""
    schema = EVENT_TYPES[subject].model_json_schema()
    nodes = _string_nodes(schema, schema.get("$defs", {}), subject)
    assert nodes
    unbounded = [path for path, node in nodes if "maxLength" not in node]
    assert unbounded == []
    without_charset = [path for path, node in nodes if "pattern" not in node]
    assert without_charset == []


def test_a_corrected_bar_gets_another_message_id_but_the_same_key() -> None:
    """JetStream's duplicate window must not drop a correction (same key, other values)."""
    first = parse_event("bar.closed", wire(good("bar.closed")))
    again = parse_event("bar.closed", wire(good("bar.closed")))
    corrected_body = good("bar.closed")
    corrected_body["close"] = 1.0729
    corrected = parse_event("bar.closed", wire(corrected_body))
    assert first.message_id() == again.message_id()
    assert first.idempotency_key() == corrected.idempotency_key()
    assert first.message_id() != corrected.message_id()
    assert first.message_id().startswith("bar.closed:EURUSD:1h:2024-05-01T11:00:00Z:")
