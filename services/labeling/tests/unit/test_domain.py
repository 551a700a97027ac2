"""Pure logic: keymap parsing, agreement, label records, exports, passwords."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hindsight.labeling.domain.export import EXPORT_FIELDS, ExportRow, to_csv, to_jsonl
from hindsight.labeling.domain.keymap import (
    DEFAULT_KEYMAP,
    KeymapError,
    key_index,
    parse_keymap,
)
from hindsight.labeling.domain.labels import (
    LabelRecord,
    agreement_rate,
    is_disagreement,
    llm_agreed,
    status_of,
)
from hindsight.labeling.domain.passwords import (
    hash_password,
    hash_token,
    new_token,
    verify_password,
)

pytestmark = pytest.mark.unit


# --- keymap ---------------------------------------------------------------------------


def test_default_keymap_has_the_documented_keys() -> None:
    index = key_index(parse_keymap(None))
    assert index["y"] == "approve" and index["n"] == "reject" and index["r"] == "review"
    assert index["c"] == "comment" and index["u"] == "undo"
    assert index["j"] == index["ArrowRight"] == index["ArrowDown"] == "next"
    assert index["k"] == index["ArrowLeft"] == index["ArrowUp"] == "prev"
    assert index["x"] == index[" "] == "select"
    assert parse_keymap("") == parse_keymap(None) == {k: list(v) for k, v in DEFAULT_KEYMAP.items()}


def test_override_replaces_only_that_action_and_lowercases_letters() -> None:
    keymap = parse_keymap('{"approve": ["A", "Enter"], "open": "o"}')
    assert keymap["approve"] == ["a", "Enter"]
    assert keymap["open"] == ["o"]
    assert keymap["reject"] == ["n"]
    assert key_index(keymap)["a"] == "approve"
    assert "y" not in key_index(keymap)


def test_override_from_a_mapping() -> None:
    assert parse_keymap({"undo": "z"})["undo"] == ["z"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"approve": "n"}', "bound to both"),
        ('{"launch": "l"}', "unknown action"),
        ('{"approve": []}', "non-empty list"),
        ('{"approve": [""]}', "non-empty strings"),
        ('{"approve": 5}', "non-empty list"),
    ],
)
def test_bad_keymaps_are_refused(raw: str, message: str) -> None:
    with pytest.raises(KeymapError, match=message):
        parse_keymap(raw)


def test_settings_reject_a_bad_keymap_at_start() -> None:
    from pydantic import ValidationError

    from hindsight.labeling.config import LabelingSettings

    with pytest.raises(ValidationError, match="bound to both"):
        LabelingSettings(keymap='{"reject": "y"}')
    assert LabelingSettings(keymap='{"reject": "x", "select": " "}').keymap["reject"] == ["x"]


# --- agreement and status -------------------------------------------------------------


def test_llm_agreed_is_null_without_a_suggestion() -> None:
    assert llm_agreed("approved", "approved") is True
    assert llm_agreed("rejected", "approved") is False
    assert llm_agreed("review", "approved") is False
    assert llm_agreed("approved", None) is None


def test_disagreement_needs_a_label_and_a_suggestion() -> None:
    assert is_disagreement("rejected", "approved")
    assert not is_disagreement("approved", "approved")
    assert not is_disagreement(None, "approved")
    assert not is_disagreement("approved", None)


def test_status_of() -> None:
    assert status_of(None) == "unlabeled"
    assert status_of("approved") == status_of("rejected") == "labeled"
    assert status_of("review") == "review"


def test_agreement_rate_ignores_trades_without_suggestion() -> None:
    assert agreement_rate([True, False, None, True, True]) == 0.75
    assert agreement_rate([None, None]) is None
    assert agreement_rate([]) is None


def test_label_record_file_shape_and_utc_timestamp() -> None:
    ts = datetime(2024, 5, 1, 14, 0, 0, 250000, tzinfo=timezone(timedelta(hours=2)))
    record = LabelRecord(
        trade_id="T1",
        label="approved",
        labeler_id="alice",
        timestamp=ts,
        quality_grade="A",
        llm_agreed=True,
        screenshot="/img/T1.png",
        chroma_vector_id="img-abc",
    )
    data = record.to_dict()
    assert list(data) == [
        "trade_id",
        "screenshot",
        "label",
        "quality_grade",
        "user_comment",
        "llm_agreed",
        "labeler_id",
        "timestamp",
        "chroma_vector_id",
    ]
    assert data["timestamp"] == "2024-05-01T12:00:00.250000Z"
    with pytest.raises(ValueError, match="label must be"):
        LabelRecord(trade_id="T1", label="maybe", labeler_id="a", timestamp=datetime.now(UTC))
    with pytest.raises(ValueError, match="timezone"):
        LabelRecord(trade_id="T1", label="review", labeler_id="a", timestamp=datetime(2024, 1, 1))


# --- exports --------------------------------------------------------------------------

ROWS = [
    ExportRow(
        record=LabelRecord(
            trade_id="T1",
            label="approved",
            quality_grade="A",
            user_comment='tight stop, "clean", entry',
            llm_agreed=True,
            labeler_id="alice",
            timestamp=datetime(2024, 5, 1, 12, tzinfo=UTC),
            screenshot="/img/T1.png",
            chroma_vector_id="img-1",
        ),
        suggestion_label="approved",
        symbol="EURUSD",
        run_id="r1",
    ),
    ExportRow(
        record=LabelRecord(
            trade_id="T2",
            label="rejected",
            user_comment="line one\nline two",
            labeler_id="bob",
            timestamp=datetime(2024, 5, 1, 12, 1, tzinfo=UTC),
        ),
        suggestion_label=None,
        symbol="GBPUSD",
        run_id="r1",
    ),
]


def test_jsonl_one_object_per_line_with_export_fields() -> None:
    lines = to_jsonl(ROWS).splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert list(first) == list(EXPORT_FIELDS)
    assert first["llm_agreed"] is True and second["llm_agreed"] is None
    assert second["user_comment"] == "line one\nline two"
    assert first["timestamp"] == "2024-05-01T12:00:00Z"
    assert to_jsonl([]) == ""


def test_csv_round_trips_quotes_newlines_and_nulls() -> None:
    text = to_csv(ROWS)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["trade_id"] for r in rows] == ["T1", "T2"]
    assert rows[0]["user_comment"] == 'tight stop, "clean", entry'
    assert rows[1]["user_comment"] == "line one\nline two"
    assert rows[0]["llm_agreed"] == "true" and rows[1]["llm_agreed"] == ""
    assert rows[1]["quality_grade"] == ""
    assert text.splitlines()[0] == ",".join(EXPORT_FIELDS)


# --- passwords ------------------------------------------------------------------------


def test_password_hash_verifies_and_is_salted() -> None:
    first = hash_password("correct horse")
    second = hash_password("correct horse")
    assert first != second  # a per-user random salt
    assert first.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", first)
    assert verify_password("correct horse", second)
    assert not verify_password("correct horsE", first)
    assert not verify_password("", first)


def test_password_hash_is_deterministic_for_a_given_salt() -> None:
    salt = bytes(range(16))
    assert hash_password("pw", salt=salt) == hash_password("pw", salt=salt)
    assert hash_password("pw", salt=salt).split("$")[4] == salt.hex()


def test_malformed_stored_hash_never_verifies() -> None:
    assert not verify_password("pw", "plain-text")
    assert not verify_password("pw", "md5$1$1$1$00$00")
    assert not verify_password("pw", "scrypt$x$8$1$00$00")
    with pytest.raises(ValueError):
        hash_password("")


def test_tokens_are_random_and_stored_hashed() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) >= 40
    assert hash_token(a) == hash_token(a) != a
    assert len(hash_token(a)) == 64
