"""Event contracts: one pydantic model per NATS subject of docs/design.md (section Events).

Every event carries ``schema_version``, ``occurred_at`` (RFC 3339, UTC) and ``source``.
Unknown extra fields are kept and re-serialised, so an older consumer can forward a newer
producer's event unchanged. Missing or ill-typed required fields are bad input:
:func:`parse_event` raises :class:`InvalidEventError`, whose one-line message names every
failing field (it travels in a NATS header to the dead-letter stream).

Producers set the ``Nats-Msg-Id`` header to :meth:`Event.message_id`,
``<subject>:<idempotency key>``, so JetStream drops a re-published event inside its
duplicate window. The subject is part of it because JetStream deduplicates per stream,
and ``signal.features`` and ``signal.outcome`` share the key ``signal_id``: with the bare
key, every outcome published soon after its signal would be dropped as a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, Self
from uuid import uuid4

from pydantic import (
    AfterValidator,
    AllowInfNan,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from hindsight.common.errors import InvalidInputError
from hindsight.common.paths import canonical_path

__all__ = [
    "AB_COMPLETED",
    "BAR_CLOSED",
    "BARS_WINDOW",
    "EMBED_QUERY",
    "DLQ_PREFIX",
    "EMBEDDING_CREATED",
    "EVENT_TYPES",
    "JSON_CREATED",
    "LABEL_SAVED",
    "MODEL_DEPLOYED",
    "PNG_CREATED",
    "PREDICTION_LOGGED",
    "SIGNAL_FEATURES",
    "SIGNAL_LABELED",
    "SIGNAL_OUTCOME",
    "SUBJECTS",
    "TRAINING_COMPLETED",
    "TRAINING_REQUESTED",
    "VECTOR_METADATA_KEYS",
    "AbCompleted",
    "BarClosed",
    "EmbeddingCreated",
    "Event",
    "FieldError",
    "ID_MAX_CHARS",
    "PATH_MAX_CHARS",
    "TEXT_MAX_CHARS",
    "THUMBNAIL_MAX_CHARS",
    "InvalidEventError",
    "JsonCreated",
    "LabelSaved",
    "ModelDeployed",
    "PngCreated",
    "PredictionLogged",
    "SignalFeatures",
    "SignalLabeled",
    "SignalOutcome",
    "TimeRange",
    "TrainingCompleted",
    "TrainingRequested",
    "canonical_json",
    "dlq_subject",
    "format_utc",
    "format_validation_error",
    "parse_event",
]

PNG_CREATED = "png.created"
JSON_CREATED = "json.created"
SIGNAL_FEATURES = "signal.features"
SIGNAL_OUTCOME = "signal.outcome"
LABEL_SAVED = "label.saved"
EMBEDDING_CREATED = "embedding.created"
TRAINING_REQUESTED = "training.requested"
TRAINING_COMPLETED = "training.completed"
MODEL_DEPLOYED = "model.deployed"
PREDICTION_LOGGED = "prediction.logged"
AB_COMPLETED = "ab.completed"
BAR_CLOSED = "bar.closed"
SIGNAL_LABELED = "signal.labeled"
DLQ_PREFIX = "dlq."
EMBED_QUERY = "embed.query"
"""NATS request-reply subject (not an event): query vectors from the embedder."""
BARS_WINDOW = "market.bars.window"
"""NATS request-reply subject (not an event): a point-in-time window of bars from market."""

# Mandatory keys of a Chroma vector's metadata (docs/design.md, section Events).
VECTOR_METADATA_KEYS: tuple[str, ...] = (
    "id",
    "file_path",
    "run_id",
    "trade_id",
    "setup_id",
    "rule_version",
    "timestamp",
    "type",
    "source",
)


# --- field types -----------------------------------------------------------------------


def format_utc(value: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``2024-05-01T12:00:00Z``, microseconds when non-zero."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _datetime_text_only(value: Any) -> Any:
    # Lax pydantic reads numbers as Unix timestamps; on the wire we want RFC 3339 text.
    if isinstance(value, datetime | str):
        return value
    raise PydanticCustomError(
        "datetime_type", "Input should be an RFC 3339 date-time string with a timezone"
    )


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# A timezone-aware instant, normalised to UTC, written as RFC 3339 with "Z".
UtcDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_datetime_text_only),
    AfterValidator(_to_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]

# --- string limits (docs/events.md, "Limits of strings") ------------------------------
# Every string field is bounded and has a character set, checked at validation, so that a
# message PostgreSQL, Chroma or a header could not hold is dead-lettered at once, naming
# its field, instead of failing in a database after every redelivery. Lengths count
# characters (Unicode code points).
ID_MAX_CHARS = 256
"""Ids and names; 4 bytes a character at most, so an id stays far below PostgreSQL's
btree entry limit (~2.7 kB)."""
PATH_MAX_CHARS = 4096
"""File paths and artifact URIs (PATH_MAX on Linux)."""
TEXT_MAX_CHARS = 65_536
"""Free text: comments, reasons, errors, documents, string values in vector metadata."""
THUMBNAIL_MAX_CHARS = 1_048_576
"""A base64 thumbnail (a NATS message is at most 1 MiB by default anyway)."""

# Control characters (Unicode Cc: C0, DEL, C1) and lone surrogates: never in an id or path.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# NUL and lone surrogates: PostgreSQL text/jsonb cannot store them, nor UTF-8 encode them.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def _char_error(kind: str, found: str, index: int) -> PydanticCustomError:
    return PydanticCustomError(
        "string_characters",
        "Input should not contain {kind} (found U+{code} at position {index})",
        {"kind": kind, "code": f"{ord(found):04X}", "index": index},
    )


@dataclass(frozen=True, slots=True)
class _Chars:
    """A string annotation: refuses the characters ``forbidden`` matches; its JSON schema
    gets ``pattern`` (ECMA syntax), so the AsyncAPI catalog documents the rule."""

    forbidden: re.Pattern[str]
    kind: str
    json_pattern: str

    def _check(self, value: str) -> str:
        found = self.forbidden.search(value)
        if found is not None:
            raise _char_error(self.kind, found.group(), found.start())
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        out = dict(handler(schema))
        out["pattern"] = self.json_pattern
        return out


_NO_CONTROL = _Chars(_CONTROL, "control characters", "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")
_NO_NUL = _Chars(_UNSTORABLE, "NUL or lone surrogates", "^[^\\u0000]*$")

# Ids and names: 1..256 characters, no control characters.
NonEmptyStr = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_CHARS), _NO_CONTROL]
# File paths and URIs: 1..4096 characters, no control characters.
PathStr = Annotated[str, StringConstraints(min_length=1, max_length=PATH_MAX_CHARS), _NO_CONTROL]
# Free text: up to 64 Ki characters, no NUL (newlines and tabs are fine).
Text = Annotated[str, StringConstraints(max_length=TEXT_MAX_CHARS), _NO_NUL]
Base64Str = Annotated[
    str,
    StringConstraints(min_length=1, max_length=THUMBNAIL_MAX_CHARS, pattern=_BASE64.pattern),
]
# Strict: no bools, no numeric strings; ints are still accepted where a float is expected.
FiniteFloat = Annotated[float, Strict(), AllowInfNan(False)]
PositiveFloat = Annotated[FiniteFloat, Field(gt=0)]
NonNegativeFloat = Annotated[FiniteFloat, Field(ge=0)]
Probability = Annotated[FiniteFloat, Field(ge=0, le=1)]
StrictInt = Annotated[int, Strict()]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
StrictBool = Annotated[bool, Strict()]
Sha256Hex = Annotated[
    str, StringConstraints(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")
]
# A label spec's hash: the first 16 hex digits of a sha256.
SpecHash = Annotated[
    str, StringConstraints(min_length=16, max_length=16, pattern=r"^[0-9a-f]{16}$")
]


def _metadata_scalar(value: Any) -> str | int | float | bool | None:
    # One plain validator instead of a union: a union's errors carry member tags in their
    # location ("metadata.k.str"), which would make the field path in the DLQ header noisy.
    if isinstance(value, str):
        if len(value) > TEXT_MAX_CHARS:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": TEXT_MAX_CHARS},
            )
        return _NO_NUL._check(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "Input should be a finite number")
        return value
    raise PydanticCustomError(
        "metadata_scalar", "Input should be a string, number, boolean or null"
    )


MetadataScalar = Annotated[
    str | int | float | bool | None,
    PlainValidator(_metadata_scalar),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": TEXT_MAX_CHARS, "pattern": _NO_NUL.json_pattern},
                {"type": "integer"},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "null"},
            ]
        }
    ),
]


def canonical_json(value: Any) -> str:
    """The canonical JSON text hashed for ``json.created`` keys (sorted keys, no spaces)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _reject_unstorable(value: Any, path: str) -> None:
    """NUL or a lone surrogate in any key or string of a JSON value: bad input."""
    if isinstance(value, str):
        found = _UNSTORABLE.search(value)
        if found is not None:
            raise PydanticCustomError(
                "string_characters",
                "Input should not contain NUL or lone surrogates (found U+{code} in {path})",
                {"code": f"{ord(found.group()):04X}", "path": path},
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _reject_unstorable(key, f"{path} (a key)")
            _reject_unstorable(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_unstorable(item, f"{path}.{index}")


def _reject_non_finite(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError(
            "finite_number", "Input should be a finite number (at {path})", {"path": path}
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_non_finite(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_non_finite(item, f"{path}.{index}")


# --- the base class --------------------------------------------------------------------


class Event(BaseModel):
    """Fields every Hindsight event carries; subclasses add the subject's own fields."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    subject: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: PositiveInt
    """Version of this subject's schema the producer wrote (starts at 1)."""
    occurred_at: UtcDatetime
    """When the fact happened, RFC 3339 with a timezone; normalised to UTC."""
    source: NonEmptyStr
    """Who produced the event: a service or tool name, e.g. ``chart-renderer``."""

    @model_validator(mode="after")
    def _extras_storable(self) -> Self:
        # Unknown fields are kept and forwarded, so they obey the rule every string does.
        for key, value in (self.model_extra or {}).items():
            _reject_unstorable(key, "an extra field's name")
            _reject_unstorable(value, key)
        return self

    @abstractmethod
    def idempotency_key(self) -> str:
        """The subject's idempotency key (consumers deduplicate by it)."""

    def message_id(self) -> str:
        """The ``Nats-Msg-Id`` header: ``<subject>:<idempotency key>``."""
        return f"{self.subject}:{self.idempotency_key()}"

    @classmethod
    def create(cls, *, source: str, **fields: Any) -> Self:
        """Build an event to publish: ``schema_version`` and ``occurred_at`` (now) filled in.

        Raises :class:`InvalidEventError` when the fields do not fit the model.
        """
        fields.setdefault("schema_version", cls.SCHEMA_VERSION)
        fields.setdefault("occurred_at", datetime.now(UTC))
        try:
            return cls.model_validate({**fields, "source": source})
        except ValidationError as exc:
            raise InvalidEventError.from_validation_error(cls.subject, exc) from exc

    def to_json_bytes(self) -> bytes:
        """Compact JSON: extras kept, optional fields that are ``None`` left out."""
        unset_optional = {
            name
            for name, info in type(self).model_fields.items()
            if not info.is_required() and getattr(self, name) is None
        }
        return self.model_dump_json(by_alias=True, exclude=unset_optional).encode()


# --- one model per subject -------------------------------------------------------------


class PngCreated(Event):
    """A chart screenshot was written.

    Idempotency key: ``file_path``. Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = PNG_CREATED

    file_path: PathStr
    """Absolute path of the PNG; must resolve inside ``HINDSIGHT_IMAGE_ROOTS``. Normalised on
    parsing (``/a/./b//c.png`` → ``/a/b/c.png``), so the key and the vector id do not depend
    on the spelling; a relative path is refused."""
    run_id: NonEmptyStr
    """The backtest or live run that produced it."""
    trade_id: NonEmptyStr | None = None
    setup_id: NonEmptyStr | None = None
    rule_version: NonEmptyStr | None = None
    symbol: NonEmptyStr | None = None
    timeframe: NonEmptyStr | None = None
    image_type: Literal["original", "annotated"] | None = None
    author: NonEmptyStr | None = None
    ts: UtcDatetime | None = None
    """The time of the trade or bar the chart shows (RFC 3339, UTC): the record's event
    time, what memory's ``as_of`` compares. ``occurred_at`` (when the file was written) is
    used when absent."""

    @field_validator("file_path")
    @classmethod
    def _canonical_file_path(cls, value: str) -> str:
        try:
            return canonical_path(value)
        except ValueError as exc:
            raise PydanticCustomError("absolute_path", str(exc)) from None

    def idempotency_key(self) -> str:
        return self.file_path


class JsonCreated(Event):
    """A JSON document about a trade, a rule, a theory or a prompt was written.

    Idempotency key: ``doc_id`` when given, else the sha256 hex digest of the canonical
    payload (UTF-8 of ``json.dumps(payload, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)``), so the key does not depend on the payload's key order.
    Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = JSON_CREATED

    doc_type: Literal[
        "zone",
        "signal",
        "backtest_result",
        "trade_meta",
        "rule",
        "llm_suggestion",
        "theory",
        "prompt",
    ]
    payload: dict[str, Any]
    """The document itself (a JSON object; numbers must be finite; no NUL in any string)."""
    run_id: NonEmptyStr
    trade_id: NonEmptyStr | None = None
    setup_id: NonEmptyStr | None = None
    rule_version: NonEmptyStr | None = None
    file_path: PathStr | None = None
    """Where the document lives on disk, when it is a file."""
    key_fields: list[NonEmptyStr] | None = None
    """Payload keys that matter most; the embedder puts them first in the text it embeds."""
    doc_id: NonEmptyStr | None = None
    """Stable id of the document; the idempotency key when given."""
    ts: UtcDatetime | None = None
    """The time of the trade, bar or document the payload describes (RFC 3339, UTC): the
    record's event time, what memory's ``as_of`` compares. ``occurred_at`` (when the
    document was written) is used when absent; the payload's own time fields are not read."""

    @field_validator("payload")
    @classmethod
    def _payload_numbers_finite(cls, value: dict[str, Any]) -> dict[str, Any]:
        # NaN would be written back as null, changing the payload and so its hash key.
        _reject_non_finite(value, "payload")
        _reject_unstorable(value, "payload")
        return value

    def idempotency_key(self) -> str:
        if self.doc_id is not None:
            return self.doc_id
        return hashlib.sha256(canonical_json(self.payload).encode()).hexdigest()


class SignalFeatures(Event):
    """The features of a candidate trade, as the scorer will see them.

    Idempotency key: ``signal_id``. Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = SIGNAL_FEATURES

    signal_id: NonEmptyStr
    symbol: NonEmptyStr
    timeframe: NonEmptyStr
    side: Literal["buy", "sell", "hold"]
    ts: UtcDatetime
    """When the signal fired (the features' as-of time; training never looks past it)."""
    features: Annotated[dict[NonEmptyStr, FiniteFloat | None], Field(min_length=1)]
    """Feature name → finite number, or null for a missing value."""
    feature_schema_version: PositiveInt
    entry_price: PositiveFloat | None = None
    run_id: NonEmptyStr | None = None
    trade_id: NonEmptyStr | None = None
    setup_id: NonEmptyStr | None = None
    rule_version: NonEmptyStr | None = None

    def idempotency_key(self) -> str:
        return self.signal_id


class SignalOutcome(Event):
    """A signal's trade closed (or the signal expired).

    ``result`` is derived from the prices by the consumer when absent.
    Idempotency key: ``signal_id``. Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = SIGNAL_OUTCOME

    signal_id: NonEmptyStr
    closed_at: UtcDatetime
    result: Literal["win", "loss", "breakeven"] | None = None
    entry_price: PositiveFloat | None = None
    exit_price: PositiveFloat | None = None
    pnl: FiniteFloat | None = None
    realised_r: FiniteFloat | None = None
    """Profit or loss in units of the initial risk (R multiple)."""
    mfe: FiniteFloat | None = None
    """Maximum favourable excursion."""
    mae: FiniteFloat | None = None
    """Maximum adverse excursion."""

    def idempotency_key(self) -> str:
        return self.signal_id


class LabelSaved(Event):
    """A labeler saved a label for a trade.

    Idempotency key: ``{trade_id}:{labeler_id}:{occurred_at}``, occurred_at in UTC with a
    ``Z`` (``2024-05-01T12:00:00Z``; ``2024-05-01T12:00:00.250000Z`` when it has
    microseconds). The first design named ``trade_id`` + ``labeler_id``, but with that key
    JetStream's duplicate window would silently drop a trader's corrected label (undo and
    relabel within the window). A redelivery keeps ``occurred_at``, so it is still
    deduplicated; a new decision is a new event with a new key.
    Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = LABEL_SAVED

    trade_id: NonEmptyStr
    label: Literal["approved", "rejected", "review"]
    labeler_id: NonEmptyStr
    quality_grade: NonEmptyStr | None = None
    user_comment: Text | None = None
    llm_agreed: StrictBool | None = None
    """Whether the label agrees with the LLM's suggestion."""
    screenshot: PathStr | None = None
    """Path of the screenshot the label was given on."""
    chroma_vector_id: NonEmptyStr | None = None

    def idempotency_key(self) -> str:
        return f"{self.trade_id}:{self.labeler_id}:{format_utc(self.occurred_at)}"


class EmbeddingCreated(Event):
    """The embedder embedded an image or a text; memory stores it in Chroma.

    ``metadata`` must hold the mandatory vector metadata keys of docs/design.md (``id``,
    ``file_path``, ``run_id``, ``trade_id``, ``setup_id``, ``rule_version``,
    ``timestamp``, ``type``, ``source``; null when unknown), with ``id`` equal to
    ``vector_id`` and ``type`` equal to ``modality``.
    Idempotency key: ``vector_id``. Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = EMBEDDING_CREATED

    vector_id: NonEmptyStr
    collection: Literal["trade_cases", "theory_docs", "prompts_history"]
    modality: Literal["image", "text"]
    model: NonEmptyStr
    """Name of the embedding model, e.g. ``clip-vit-b-32``."""
    embedding: Annotated[list[FiniteFloat], Field(min_length=1)]
    metadata: Annotated[
        dict[NonEmptyStr, MetadataScalar],
        Field(json_schema_extra={"required": list(VECTOR_METADATA_KEYS)}),
    ]
    """Chroma metadata of the vector: the mandatory keys, plus ``image_type``,
    ``user_label`` and ``quality_grade`` when known."""
    document: Text | None = None
    """The embedded text (text modality) or a caption."""
    thumbnail_b64: Base64Str | None = None
    """A small base64 PNG of the image, for search results."""

    @field_validator("metadata")
    @classmethod
    def _mandatory_metadata(
        cls, value: dict[str, str | int | float | bool | None], info: ValidationInfo
    ) -> dict[str, str | int | float | bool | None]:
        missing = [key for key in VECTOR_METADATA_KEYS if key not in value]
        if missing:
            raise PydanticCustomError(
                "missing_metadata",
                "missing mandatory keys: {keys}",
                {"keys": ", ".join(missing)},
            )
        vector_id = info.data.get("vector_id")
        if vector_id is not None and value["id"] != vector_id:
            raise PydanticCustomError("metadata_mismatch", "id must equal vector_id")
        modality = info.data.get("modality")
        if modality is not None and value["type"] != modality:
            raise PydanticCustomError("metadata_mismatch", "type must equal modality")
        return value

    def idempotency_key(self) -> str:
        return self.vector_id


class TrainingRequested(Event):
    """Someone asked the trainer for a training run.

    Idempotency key: ``request_id``. Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    Producers should set ``request_id``; when it is absent a fresh one is generated on
    parsing, so such a message cannot be deduplicated.
    """

    subject: ClassVar[str] = TRAINING_REQUESTED

    model_name: NonEmptyStr
    mode: Literal["full", "incremental"]
    reason: Text | None = None
    requested_by: NonEmptyStr | None = None
    request_id: NonEmptyStr = Field(default_factory=lambda: uuid4().hex)

    def idempotency_key(self) -> str:
        return self.request_id


class TimeRange(BaseModel):
    """A closed interval of time, ``start <= end``."""

    model_config = ConfigDict(extra="allow")

    start: UtcDatetime
    end: UtcDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise PydanticCustomError("time_range", "end must not be before start")
        return self


class TrainingCompleted(Event):
    """A training run ended: completed (a new version), failed or skipped.

    Idempotency key: ``training_run_id``. Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = TRAINING_COMPLETED

    training_run_id: NonEmptyStr
    model_name: NonEmptyStr
    status: Literal["completed", "failed", "skipped"]
    version: NonEmptyStr | None = None
    artifact_uri: PathStr | None = None
    """Where ``models/{model_name}/{version}/`` lives, under ``HINDSIGHT_ARTIFACT_ROOT``."""
    sha256: Sha256Hex | None = None
    """sha256 of ``model.onnx``, 64 lowercase hex digits."""
    metrics: dict[str, Any] | None = None
    feature_names: list[NonEmptyStr] | None = None
    feature_schema_version: PositiveInt | None = None
    dataset_size: NonNegativeInt | None = None
    data_time_range: TimeRange | None = None
    duration_s: NonNegativeFloat | None = None
    error: Text | None = None
    """Why the run failed or was skipped."""

    @field_validator("metrics")
    @classmethod
    def _metrics_storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        _reject_unstorable(value, "metrics")
        return value

    def idempotency_key(self) -> str:
        return self.training_run_id


class ModelDeployed(Event):
    """The registry moved a model version to a stage; scorers and the gateway follow.

    Idempotency key: ``{model_name}:{version}:{stage}``, plus ``:{deployment_id}`` when
    the registry sets one. It does: a rollback makes an earlier version production again,
    and with the bare key JetStream's duplicate window would silently drop that event.
    Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = MODEL_DEPLOYED

    model_name: NonEmptyStr
    version: NonEmptyStr
    stage: Literal["production", "canary", "shadow", "retired"]
    artifact_uri: PathStr
    sha256: Sha256Hex
    """sha256 of ``model.onnx``, 64 lowercase hex digits."""
    experiment_id: NonEmptyStr | None = None
    traffic: dict[NonEmptyStr, NonNegativeFloat] | None = None
    """Version → routing weight (weights >= 0)."""
    previous_version: NonEmptyStr | None = None
    deployment_id: NonEmptyStr | None = None
    """Unique per stage change (the registry's outbox id); part of the idempotency key."""

    def idempotency_key(self) -> str:
        key = f"{self.model_name}:{self.version}:{self.stage}"
        return f"{key}:{self.deployment_id}" if self.deployment_id else key


class PredictionLogged(Event):
    """One answer given to the trading engine (fallbacks included).

    ``model_version`` is required but null when a fallback answered without a model.
    Idempotency key: ``prediction_id``. Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = PREDICTION_LOGGED

    prediction_id: NonEmptyStr
    signal_id: NonEmptyStr
    model_version: NonEmptyStr | None
    p_success: Probability
    fallback: StrictBool
    experiment_id: NonEmptyStr | None = None
    arm: NonEmptyStr | None = None
    latency_ms: NonNegativeFloat | None = None
    model_name: NonEmptyStr | None = None
    """The model (or model family, for ``Predict``) that answered; absent: the default model."""

    def idempotency_key(self) -> str:
        return self.prediction_id


class AbCompleted(Event):
    """An A/B experiment was decided.

    Idempotency key: ``experiment_id``. Producers set ``Nats-Msg-Id`` to ``<subject>:<key>``.
    """

    subject: ClassVar[str] = AB_COMPLETED

    experiment_id: NonEmptyStr
    model_name: NonEmptyStr
    decision: Literal["promote", "keep", "inconclusive"]
    winner: NonEmptyStr | None = None
    p_value: Probability | None = None
    per_arm: dict[NonEmptyStr, dict[NonEmptyStr, FiniteFloat]] | None = None
    """Arm → metric name → value."""
    n: NonNegativeInt | None = None
    """Number of outcomes the decision rests on."""

    def idempotency_key(self) -> str:
        return self.experiment_id


class BarClosed(Event):
    """One market bar (OHLCV) of a symbol and timeframe closed.

    ``ts`` is the bar's OPEN time. The market service checks every bar with its integrity
    gate (known timeframe, ``ts`` aligned to it and after the series' previous bar, low ≤
    open/close ≤ high, volume ≥ 0) and dead-letters a bad one naming the field.
    Idempotency key: ``{symbol}:{timeframe}:{ts}`` (ts in UTC with a ``Z``); a bar sent
    again with other values is a correction and replaces the stored one (audited). So that
    JetStream's duplicate window does not drop such a correction, ``Nats-Msg-Id`` is
    ``<subject>:<key>:<12 hex of sha256 of the values>``: the same bar sent twice is
    deduplicated, a corrected one is not.
    """

    subject: ClassVar[str] = BAR_CLOSED

    symbol: NonEmptyStr
    timeframe: NonEmptyStr
    """One of ``1m``, ``5m``, ``15m``, ``30m``, ``1h``, ``4h``, ``1d``, ``1mo`` (calendar
    months: the bar opens on the 1st at 00:00 UTC); checked by market."""
    ts: UtcDatetime
    """The bar's open time (RFC 3339, UTC)."""
    open: FiniteFloat
    high: FiniteFloat
    low: FiniteFloat
    close: FiniteFloat
    volume: FiniteFloat
    """Traded volume in the bar (≥ 0, checked by market's integrity gate)."""
    trades: NonNegativeInt | None = None
    """Number of trades in the bar."""
    vwap: FiniteFloat | None = None
    """Volume-weighted average price of the bar."""

    def idempotency_key(self) -> str:
        return f"{self.symbol}:{self.timeframe}:{format_utc(self.ts)}"

    def values_digest(self) -> str:
        """12 hex digits of sha256 over the bar's values (OHLCV, trades, vwap)."""
        values = [self.open, self.high, self.low, self.close, self.volume, self.trades, self.vwap]
        return hashlib.sha256(canonical_json(values).encode()).hexdigest()[:12]

    def message_id(self) -> str:
        return f"{self.subject}:{self.idempotency_key()}:{self.values_digest()}"


class SignalLabeled(Event):
    """The Back-Labeler's outcome labels of one signal under one label spec.

    Computed by market once every bar of the signal's horizon exists, for every buy or
    sell ``signal.features`` (taken or not); R is ``stop_katr`` × ATR at the signal.
    Idempotency key: ``{signal_id}:{label_spec}``. Producers set ``Nats-Msg-Id`` to
    ``<subject>:<key>``; a changed spec is a new hash, so it relabels and never mixes.
    A corrected bar inside a label's window relabels it under the same key with a higher
    ``label_revision``; ``Nats-Msg-Id`` is then ``<subject>:<key>:r<revision>`` so that
    JetStream's duplicate window does not drop it. Consumers keep the highest revision.
    """

    subject: ClassVar[str] = SIGNAL_LABELED

    signal_id: NonEmptyStr
    label_spec: SpecHash
    """The label spec's hash (first 16 hex digits of the sha256 of its canonical JSON)."""
    horizon_bars: PositiveInt
    """Bars after the signal the labels look at."""
    runup_r: FiniteFloat
    """Best favourable move within the horizon, in R."""
    drawdown_r: FiniteFloat
    """Worst adverse move within the horizon, in R."""
    realised_r: FiniteFloat
    """Result of the canonical simulated entry (target +target_r R, stop -1 R), in R."""
    y_entry: Annotated[StrictInt, Field(ge=0, le=1)]
    """1 when +1 R was reached before -1 R within the horizon, else 0."""
    t_hit_tp: NonNegativeFloat | None = None
    """Minutes from the signal to the target, null when not reached."""
    t_hit_sl: NonNegativeFloat | None = None
    """Minutes from the signal to the stop, null when not reached."""
    mfe_atr: FiniteFloat | None = None
    mae_atr: FiniteFloat | None = None
    mfe_r: FiniteFloat | None = None
    mae_r: FiniteFloat | None = None
    dd_katr: FiniteFloat | None = None
    """Largest adverse excursion over the risk horizon, in ATR (the Risk model's target)."""
    best_offset_katr: FiniteFloat | None = None
    """The grid's best entry offset, in ATR (the Entry-Offset model's target)."""
    liquidity_cluster: Literal["H", "M", "L"] | None = None
    """The symbol's liquidity cluster when the signal was labelled."""
    symbol: NonEmptyStr | None = None
    timeframe: NonEmptyStr | None = None
    label_revision: NonNegativeInt = 0
    """0 for the first label; +1 each time a corrected bar relabels it (newest wins)."""

    def idempotency_key(self) -> str:
        return f"{self.signal_id}:{self.label_spec}"

    def message_id(self) -> str:
        base = f"{self.subject}:{self.idempotency_key()}"
        return base if self.label_revision == 0 else f"{base}:r{self.label_revision}"


# --- registry and parsing --------------------------------------------------------------

_MODELS: tuple[type[Event], ...] = (
    PngCreated,
    JsonCreated,
    SignalFeatures,
    SignalOutcome,
    LabelSaved,
    EmbeddingCreated,
    TrainingRequested,
    TrainingCompleted,
    ModelDeployed,
    PredictionLogged,
    AbCompleted,
    BarClosed,
    SignalLabeled,
)
EVENT_TYPES: Mapping[str, type[Event]] = MappingProxyType({m.subject: m for m in _MODELS})
"""Subject → event model, in the order of docs/design.md."""
SUBJECTS: tuple[str, ...] = tuple(EVENT_TYPES)


def dlq_subject(subject: str) -> str:
    """The dead-letter subject of ``subject``: ``dlq.<subject>``."""
    return DLQ_PREFIX + subject


@dataclass(frozen=True, slots=True)
class FieldError:
    """One failing field: its dotted path (``features.rsi``; ``body`` for the whole message)."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


_LOC_PART_CHARS = 64


def _loc_part(part: str | int) -> str:
    # A dict key is part of the path; a bad key (8 kB, NUL) must not make the error line,
    # which travels in a NATS header, long or binary: escape and shorten it.
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(part))
    return text if len(text) <= _LOC_PART_CHARS else text[: _LOC_PART_CHARS - 1] + "…"


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(
            field=_one_line(".".join(_loc_part(part) for part in error["loc"])) or "body",
            reason=_one_line(error["msg"]),
        )
        for error in exc.errors(include_url=False, include_input=False)
    ]


def format_validation_error(exc: ValidationError) -> str:
    """``field: reason; field: reason`` on one line, every failing field named."""
    return "; ".join(str(error) for error in _field_errors(exc))


class InvalidEventError(InvalidInputError):
    """An event that does not fit its subject's model: bad input, never retried."""

    def __init__(self, subject: str, errors: Sequence[FieldError]) -> None:
        details = "; ".join(str(error) for error in errors) or "invalid event"
        super().__init__(_one_line(f"{subject}: {details}"))
        self.subject = subject
        self.errors = list(errors)
        self.field = self.errors[0].field if self.errors else None

    @classmethod
    def from_validation_error(cls, subject: str, exc: ValidationError) -> InvalidEventError:
        """Translate pydantic's error, keeping every failing field."""
        return cls(subject, _field_errors(exc))


def parse_event(subject: str, data: bytes) -> Event:
    """Validate the JSON bytes received on ``subject`` into its event model.

    Raises :class:`InvalidInputError` (field ``subject``) for a subject with no model and
    :class:`InvalidEventError` for bytes that are not a JSON object fitting the model.
    """
    model = EVENT_TYPES.get(subject)
    if model is None:
        raise InvalidInputError(f"no event model for subject {subject!r}", field="subject")
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidEventError.from_validation_error(subject, exc) from exc
