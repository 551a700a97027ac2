"""The family release contract: versions, paths, the card's completeness rules."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from hindsight.common.errors import InvalidInputError
from hindsight.common.family import (
    CLUSTER_FEATURE,
    FamilyCard,
    entry_style,
    family_dir,
    family_uri,
    format_version,
    load_family_card,
    parse_version,
)

pytestmark = pytest.mark.unit

SHA = "ab" * 32


def _member(name: str, head: str, **extra: Any) -> dict[str, Any]:
    quantile = head != "entry"
    base: dict[str, Any] = {
        "name": name,
        "head": head,
        "kind": "quantile" if quantile else "binary",
        "target": {"entry": "y_entry", "risk": "sl_katr", "rr": "rr_target"}.get(
            head, "offset_katr"
        ),
        "version": "v1_0_0",
        "file": f"{name}.onnx",
        "sha256": SHA,
        "features": ["rsi_14", "atr_14"],
        "output": "quantiles" if quantile else "probabilities",
    }
    if quantile:
        base |= {"alphas": [0.6, 0.7, 0.8], "served_alpha": 0.7}
    return base | extra


def _card(**extra: Any) -> dict[str, Any]:
    members = [
        _member("entry_H", "entry", cluster="H"),
        _member("entry_pooled", "entry", features=["rsi_14", "atr_14", CLUSTER_FEATURE]),
        _member("risk", "risk"),
        _member("rr", "rr"),
        _member("offset", "offset"),
    ]
    base: dict[str, Any] = {
        "family": "playbook",
        "version": "v1_2_0",
        "training_run_id": "run-1",
        "created_at": datetime(2026, 12, 8, tzinfo=UTC).isoformat(),
        "feature_schema_version": 1,
        "features": ["rsi_14", "atr_14"],
        "members": members,
        "entry_routing": {"H": "entry_H", "M": "entry_pooled", "L": "entry_pooled"},
    }
    return base | extra


def test_versions_round_trip_and_bad_ones_name_the_field() -> None:
    assert format_version(1, 2, 0) == "v1_2_0"
    assert parse_version("v10_0_3") == (10, 0, 3)
    for bad in ("1.2.0", "v1_2", "v01_2_0", "v1_2_0/..", ""):
        with pytest.raises(InvalidInputError) as err:
            parse_version(bad)
        assert err.value.field == "family_version"


def test_paths_stay_one_segment_each(tmp_path: Path) -> None:
    assert family_uri("playbook", "v1_0_0") == "families/playbook/v1_0_0"
    assert family_dir(tmp_path, "playbook", "v1_0_0") == tmp_path / "families/playbook/v1_0_0"
    with pytest.raises(InvalidInputError):
        family_uri("../models", "v1_0_0")


def test_entry_style_follows_the_offset_sign() -> None:
    assert entry_style(-0.15) == "LIMIT"
    assert entry_style(0.0) == "STOP"
    assert entry_style(0.25) == "STOP"


def test_card_routes_entry_by_cluster_and_serves_the_configured_quantile(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(FamilyCard.model_validate(_card()).model_dump_json())
    card = load_family_card(tmp_path)
    assert card.head_member("entry", "H").name == "entry_H"
    assert card.head_member("entry", "L").name == "entry_pooled"
    assert card.head_member("entry", None).name == "entry_pooled"
    risk = card.head_member("risk")
    assert risk.served_column() == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"members": [_member("entry_pooled", "entry")]}, "missing"),
        (
            {"entry_routing": {"H": "risk", "M": "entry_pooled", "L": "entry_pooled"}},
            "entry_routing",
        ),
        ({"version": "1.2.0"}, "v1_4_0"),
    ],
)
def test_incomplete_cards_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises((ValidationError, InvalidInputError), match=message):
        FamilyCard.model_validate(_card(**change))


def test_quantile_member_needs_ascending_alphas() -> None:
    members = _card()["members"]
    members[2] = _member("risk", "risk", alphas=[0.8, 0.6, 0.7])
    with pytest.raises(ValidationError, match="ascending"):
        FamilyCard.model_validate(_card(members=members))
