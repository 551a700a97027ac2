"""The event catalog: an AsyncAPI 3.0.0 document generated from the event models.

``python -m hindsight.common.catalog --output docs/asyncapi.yaml`` writes it (``make
asyncapi``); ``--check docs/asyncapi.yaml`` exits 1 when the committed file differs from
what the models generate now. Without options the document goes to stdout. A path
ending in ``.json`` gets JSON, anything else YAML.

:data:`PUBLISHERS` and :data:`CONSUMERS` say who sends and who receives each subject; the
NATS permissions of the secured deployment (deploy/nats/nats-secure.conf) are tested
against them, and the consumers against what each service subscribes
(tests/deploy/test_nats_permissions.py).
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from faststream.nats import NatsBroker
from faststream.specification import AsyncAPI
from faststream.specification.asyncapi.v3_0_0.schema import ApplicationSchema
from pydantic import RootModel

from hindsight.common.broker import DLQ_HEADERS, DLQ_STREAM, STREAM
from hindsight.common.events import (
    AB_COMPLETED,
    BAR_CLOSED,
    BARS_WINDOW,
    EMBED_QUERY,
    EMBEDDING_CREATED,
    EVENT_TYPES,
    JSON_CREATED,
    LABEL_SAVED,
    MODEL_DEPLOYED,
    PNG_CREATED,
    PREDICTION_LOGGED,
    SIGNAL_FEATURES,
    SIGNAL_LABELED,
    SIGNAL_OUTCOME,
    TRAINING_COMPLETED,
    TRAINING_REQUESTED,
    dlq_subject,
)

__all__ = [
    "CATALOG_VERSION",
    "CONSUMERS",
    "PUBLISHERS",
    "UPSTREAM",
    "DeadLetterBody",
    "build_broker",
    "build_spec",
    "main",
    "render",
]

# The version of the catalog document; each subject versions itself with schema_version.
CATALOG_VERSION = "1.0.0"

UPSTREAM = "upstream"
"""The tools outside Hindsight that feed it: the trading engine, the replay feeder, chart
tools and operators' tools (one party: the NATS user ``producer`` when secured)."""


def _parties(*names: str) -> frozenset[str]:
    return frozenset(names)


PUBLISHERS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        PNG_CREATED: _parties(UPSTREAM),
        JSON_CREATED: _parties(UPSTREAM),
        SIGNAL_FEATURES: _parties(UPSTREAM),
        SIGNAL_OUTCOME: _parties(UPSTREAM),
        LABEL_SAVED: _parties("labeling"),
        EMBEDDING_CREATED: _parties("embedder"),
        TRAINING_REQUESTED: _parties(UPSTREAM),
        TRAINING_COMPLETED: _parties("trainer"),
        MODEL_DEPLOYED: _parties("registry"),  # its outbox
        PREDICTION_LOGGED: _parties("scorer", "gateway"),
        AB_COMPLETED: _parties("registry"),  # its outbox
        EMBED_QUERY: _parties("memory"),  # requests; the answer goes to the requester's inbox
        BAR_CLOSED: _parties(UPSTREAM),
        SIGNAL_LABELED: _parties("market"),  # its outbox
        BARS_WINDOW: _parties(UPSTREAM),  # requests; the answer goes to the requester's inbox
    }
)
"""Subject → who publishes it: service names and :data:`UPSTREAM`. Every subject of
:data:`~hindsight.common.events.EVENT_TYPES`, plus the request-reply subjects
:data:`~hindsight.common.events.EMBED_QUERY` and
:data:`~hindsight.common.events.BARS_WINDOW` (core NATS, not in the stream)."""

CONSUMERS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        PNG_CREATED: _parties("embedder", "labeling"),
        JSON_CREATED: _parties("embedder", "labeling"),
        SIGNAL_FEATURES: _parties("trainer", "market"),
        SIGNAL_OUTCOME: _parties("trainer", "registry"),
        LABEL_SAVED: _parties("trainer", "memory"),
        EMBEDDING_CREATED: _parties("memory"),
        TRAINING_REQUESTED: _parties("trainer"),
        TRAINING_COMPLETED: _parties("registry"),
        MODEL_DEPLOYED: _parties("scorer", "gateway"),  # replayed, then live
        PREDICTION_LOGGED: _parties("registry"),
        AB_COMPLETED: _parties("gateway"),  # replayed, then live
        EMBED_QUERY: _parties("embedder"),  # answers (a queue group)
        BAR_CLOSED: _parties("market"),
        SIGNAL_LABELED: _parties("trainer"),  # model families' targets; risk later
        BARS_WINDOW: _parties("market"),  # answers (a queue group)
    }
)
"""Subject → the services that consume it: JetStream consumers of the events (each may
dead-letter what it consumes to ``dlq.<subject>``), and for the request-reply subjects
the service that answers."""

_EVENT_HEADERS: dict[str, str] = {
    "Nats-Msg-Id": "<subject>:<idempotency key> (the key: see the payload schema's description); "
    "JetStream drops a second message with the same id inside its duplicate window.",
}

_DESCRIPTION = f"""\
The events Hindsight services and upstream tools exchange over NATS JetStream.

Every subject lives in the stream `{STREAM}`; payloads are JSON objects that carry
`schema_version`, `occurred_at` (RFC 3339 UTC) and `source`. Unknown extra fields are
kept. Producers set the `Nats-Msg-Id` header to `<subject>:<idempotency key>`. A message
that fails validation, or still fails after bounded redeliveries, goes unchanged to
`dlq.<subject>` in the stream `{DLQ_STREAM}`, with the error in its headers.

Generated from hindsight.common.events by `make asyncapi`; do not edit by hand."""

_V = TypeVar("_V")


class DeadLetterBody(RootModel[bytes]):
    """The original message's bytes, unchanged (usually, but not always, JSON)."""


def _reflow(text: str) -> str:
    """Unwrap hard-wrapped paragraphs, so that AsyncAPI viewers can wrap them."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def _doc(obj: object) -> str:
    return _reflow(obj.__doc__ or "")


def _reflow_descriptions(schema: Any) -> None:
    # Model and field docstrings reach the JSON schemas with their source line breaks.
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "description" and isinstance(value, str):
                schema[key] = _reflow(value)
            else:
                _reflow_descriptions(value)
    elif isinstance(schema, list):
        for item in schema:
            _reflow_descriptions(item)


def build_broker() -> NatsBroker:
    """A broker that only describes the events: one publisher per subject and DLQ subject."""
    broker = NatsBroker(
        specification_url="nats://localhost:4222",
        description="NATS with JetStream; services read the URL from HINDSIGHT_NATS_URL.",
    )
    for subject, model in EVENT_TYPES.items():
        broker.publisher(subject, schema=model, title=subject, description=_doc(model))
    for subject in EVENT_TYPES:
        broker.publisher(
            dlq_subject(subject),
            schema=DeadLetterBody,
            title=dlq_subject(subject),
            description=(
                f"Dead letters of `{subject}` (stream `{DLQ_STREAM}`): the original "
                "message's bytes unchanged; why it failed is in the headers."
            ),
        )
    return broker


def _headers_schema(headers: dict[str, str], *, required: Sequence[str]) -> dict[str, Any]:
    # A fresh dict per message: shared objects would come out as YAML anchors.
    schema: dict[str, Any] = {"type": "object"}
    if required:
        schema["required"] = list(required)
    schema["properties"] = {
        name: {"type": "string", "description": text} for name, text in headers.items()
    }
    return schema


def _message_extras() -> dict[str, dict[str, Any]]:
    """Channel name -> what faststream leaves out of its Message Object."""
    extras: dict[str, dict[str, Any]] = {}
    for subject, model in EVENT_TYPES.items():
        extras[subject] = {
            "name": model.__name__,
            "summary": _doc(model).splitlines()[0],
            "headers": _headers_schema(_EVENT_HEADERS, required=()),
        }
    for subject in EVENT_TYPES:
        extras[dlq_subject(subject)] = {
            "name": f"{EVENT_TYPES[subject].__name__}DeadLetter",
            "summary": f"A {subject} message that could not be handled.",
            "headers": _headers_schema(
                DLQ_HEADERS, required=[name for name in DLQ_HEADERS if name != "Nats-Msg-Id"]
            ),
        }
    return extras


def _in_order(items: dict[str, _V], first: Sequence[str]) -> dict[str, _V]:
    # faststream keeps publishers in a WeakSet: without this the order changes per run.
    rest = sorted(key for key in items if key not in first)
    return {key: items[key] for key in [*first, *rest] if key in items}


def build_spec() -> ApplicationSchema:
    """The AsyncAPI 3.0.0 document, every part in a stable order."""
    spec = AsyncAPI(
        build_broker(),
        title="Hindsight events",
        version=CATALOG_VERSION,
        description=_reflow(_DESCRIPTION),
        schema_version="3.0.0",
    ).to_specification()
    assert isinstance(spec, ApplicationSchema)
    assert spec.components is not None

    channels = [*EVENT_TYPES, *(dlq_subject(subject) for subject in EVENT_TYPES)]
    spec.channels = _in_order(spec.channels, channels)
    spec.operations = _in_order(spec.operations, channels)

    # faststream has no per-message name/summary/headers options; AsyncAPI has them.
    extras = _message_extras()
    messages = _in_order(spec.components.messages or {}, [f"{c}:Message" for c in channels])
    spec.components.messages = {
        name: message.model_copy(update=extras[name.removesuffix(":Message")])
        for name, message in messages.items()
    }

    schemas = _in_order(
        spec.components.schemas or {},
        [model.__name__ for model in EVENT_TYPES.values()],
    )
    # A string schema: drop the empty "properties" faststream adds to every payload.
    schemas[DeadLetterBody.__name__].pop("properties", None)
    _reflow_descriptions(schemas)
    spec.components.schemas = schemas
    return spec


def render(fmt: str = "yaml") -> str:
    """The document as ``yaml`` or ``json`` text."""
    spec = build_spec()
    if fmt == "json":
        return json.dumps(spec.to_jsonable(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return spec.to_yaml()
    raise ValueError(f"unknown format {fmt!r}: expected yaml or json")


def _format_for(path: Path) -> str:
    return "json" if path.suffix == ".json" else "yaml"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write, check or print the catalog; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m hindsight.common.catalog",
        description="Generate the AsyncAPI event catalog from the event models.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--output", type=Path, help="write the catalog to this file")
    group.add_argument(
        "--check", type=Path, help="exit 1 when this file differs from the generated catalog"
    )
    args = parser.parse_args(argv)

    if args.check is not None:
        path: Path = args.check
        expected = render(_format_for(path))
        try:
            actual = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            print(f"{path} does not exist; run `make asyncapi`", file=sys.stderr)
            return 1
        if actual != expected:
            diff = difflib.unified_diff(
                actual.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                fromfile=f"{path} (committed)",
                tofile=f"{path} (generated from hindsight.common.events)",
            )
            sys.stderr.writelines(list(diff)[:60])
            print(
                f"\n{path} is out of date with the event models; run `make asyncapi` "
                "and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{path} is up to date")
        return 0

    text = render(_format_for(args.output) if args.output is not None else "yaml")
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
