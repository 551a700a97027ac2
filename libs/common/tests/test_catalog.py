"""The committed event catalog (docs/asyncapi.yaml) must be what the models generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hindsight.common.catalog import main, render
from hindsight.common.events import EVENT_TYPES, SUBJECTS, dlq_subject

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "docs" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(render("yaml"))
    return data


def test_committed_catalog_is_up_to_date() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render("yaml"), (
        "docs/asyncapi.yaml is out of date with hindsight.common.events: run `make asyncapi`"
    )


def test_generation_is_deterministic() -> None:
    assert render("yaml") == render("yaml")
    assert render("json") == render("json")


def test_spec_header(spec: dict[str, Any]) -> None:
    assert spec["asyncapi"] == "3.0.0"
    assert spec["info"]["title"] == "Hindsight events"
    assert spec["info"]["version"]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_every_subject_has_its_payload_schema(spec: dict[str, Any], subject: str) -> None:
    model = EVENT_TYPES[subject]
    channel = spec["channels"][subject]
    assert channel["address"] == subject
    assert "Idempotency key" in channel["description"]
    assert "Nats-Msg-Id" in channel["description"]

    message = spec["components"]["messages"][f"{subject}:Message"]
    assert message["payload"] == {"$ref": f"#/components/schemas/{model.__name__}"}
    assert "Nats-Msg-Id" in message["headers"]["properties"]

    schema = spec["components"]["schemas"][model.__name__]
    required = [name for name, field in model.model_fields.items() if field.is_required()]
    assert schema["required"] == required
    assert {"schema_version", "occurred_at", "source"} <= set(schema["required"])
    assert schema["additionalProperties"] is True
    assert spec["operations"][subject]["channel"] == {"$ref": f"#/channels/{subject}"}


@pytest.mark.parametrize(
    ("subject", "required"),
    [
        ("png.created", ["file_path", "run_id"]),
        ("json.created", ["doc_type", "payload", "run_id"]),
        ("signal.features", ["signal_id", "symbol", "timeframe", "side", "ts", "features"]),
        ("label.saved", ["trade_id", "label", "labeler_id"]),
        ("prediction.logged", ["prediction_id", "signal_id", "model_version", "p_success"]),
        ("model.deployed", ["model_name", "version", "stage", "artifact_uri", "sha256"]),
    ],
)
def test_design_required_fields_are_in_the_spec(
    spec: dict[str, Any], subject: str, required: list[str]
) -> None:
    schema = spec["components"]["schemas"][EVENT_TYPES[subject].__name__]
    assert set(required) <= set(schema["required"])


@pytest.mark.parametrize("subject", SUBJECTS)
def test_every_dlq_subject_is_documented(spec: dict[str, Any], subject: str) -> None:
    dlq = dlq_subject(subject)
    assert spec["channels"][dlq]["address"] == dlq
    message = spec["components"]["messages"][f"{dlq}:Message"]
    assert message["payload"] == {"$ref": "#/components/schemas/DeadLetterBody"}
    headers = message["headers"]
    assert set(headers["properties"]) == {
        "Hindsight-Error",
        "Hindsight-Error-Type",
        "Hindsight-Delivery-Count",
        "Hindsight-Subject",
        "Hindsight-Consumer",
        "Hindsight-Failed-At",
        "Nats-Msg-Id",
    }
    assert "Hindsight-Error" in headers["required"]


def test_cli_check_passes_on_the_committed_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", str(COMMITTED)]) == 0


def test_cli_check_fails_on_a_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text(render("yaml").replace("minLength: 1", "minLength: 2", 1), encoding="utf-8")
    assert main(["--check", str(stale)]) == 1
    err = capsys.readouterr().err
    assert "out of date" in err
    assert "make asyncapi" in err
    assert main(["--check", str(tmp_path / "missing.yaml")]) == 1


def test_cli_output_writes_yaml_and_json(tmp_path: Path) -> None:
    assert main(["--output", str(tmp_path / "a.yaml")]) == 0
    assert (tmp_path / "a.yaml").read_text(encoding="utf-8") == render("yaml")
    assert main(["--output", str(tmp_path / "a.json")]) == 0
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == render("json")
