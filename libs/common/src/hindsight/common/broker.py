"""NATS JetStream plumbing shared by every service.

* :func:`create_broker` builds a faststream ``NatsBroker``;
* :func:`ensure_streams` creates or updates the ``HINDSIGHT`` and ``HINDSIGHT_DLQ`` streams;
* :func:`publish_event` publishes an event with ``Nats-Msg-Id`` = ``<subject>:<key>``;
* :func:`subscribe_event` registers a durable pull consumer whose handler gets a validated
  event; bad input and messages that still fail after ``max_deliveries`` go to
  ``dlq.<subject>`` with the original bytes, the error and the delivery count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from faststream import AckPolicy
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PubAck, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.security import NatsUserPassword
from nats.errors import Error as NatsError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError as StreamNotFoundError

from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.common.events import SUBJECTS, Event, dlq_subject, format_utc, parse_event
from hindsight.common.metrics import EVENT_HANDLING_SECONDS, EVENTS_CONSUMED, EVENTS_PUBLISHED
from hindsight.common.settings import BaseServiceSettings

__all__ = [
    "DLQ_HEADERS",
    "DLQ_STREAM",
    "STREAM",
    "ConsumerOptions",
    "create_broker",
    "dead_letter",
    "ensure_streams",
    "publish_event",
    "retry_delay",
    "split_credentials",
    "subscribe_event",
]

logger = logging.getLogger(__name__)

STREAM = "HINDSIGHT"
DLQ_STREAM = "HINDSIGHT_DLQ"
# Header name -> meaning, for messages on dlq.<subject> (documented in the event catalog).
DLQ_HEADERS: dict[str, str] = {
    "Hindsight-Error": "The error on one line; a validation error names every failing field.",
    "Hindsight-Error-Type": "Class name of the error, e.g. InvalidEventError.",
    "Hindsight-Delivery-Count": "How many times the message was delivered before it was "
    "dead-lettered.",
    "Hindsight-Subject": "The original subject.",
    "Hindsight-Consumer": "The durable consumer (service) that gave up on the message.",
    "Hindsight-Failed-At": "When it was dead-lettered, RFC 3339 UTC.",
    "Nats-Msg-Id": "<consumer>:<stream>:<stream sequence> of the original message, so a "
    "consumer that crashes after writing the dead letter does not write it twice.",
}
_MAX_HEADER_CHARS = 4000
_DUPLICATE_WINDOW_S = 120.0

E = TypeVar("E", bound=Event)
Handler = Callable[[E], Awaitable[None]]


class _IdleFetchTimeoutFilter(logging.Filter):
    """Downgrade faststream's "raised an exception, retrying" for an idle pull fetch.

    nats-py sometimes ends an empty batch fetch with the builtin ``TimeoutError``, which
    faststream 0.7 does not suppress (it expects ``nats.errors.TimeoutError``): the fetch
    task is restarted and nothing is lost, but an ERROR with a traceback would wake an
    operator for nothing. Any other error keeps its level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if (
            type(exc) is TimeoutError
            and "retrying" in record.getMessage()
            and record.levelno >= logging.ERROR
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info = None
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def split_credentials(servers: list[str]) -> tuple[list[str], NatsUserPassword | None]:
    """Move ``user:password@`` out of the NATS URLs into connection options.

    nats-py sends credentials written in a URL only to that URL's server, not to the other
    servers of a cluster it learns about (INFO ``connect_urls``), so a reconnect to one of
    those would fail to log in. Given as options they go to every server. URLs are left as
    they are when they carry different credentials or only a token.
    """
    parsed = [urlsplit(url if "://" in url else f"nats://{url}") for url in servers]
    pairs = {(p.username, p.password) for p in parsed if p.username is not None}
    if len(pairs) != 1:
        return servers, None
    ((user, password),) = pairs
    if user is None or password is None:
        return servers, None
    bare = [p._replace(netloc=p.netloc.rpartition("@")[2]).geturl() for p in parsed]
    # As written, not percent-decoded: nats-py sends URL credentials verbatim, and a
    # password must not change meaning with where it is carried.
    return bare, NatsUserPassword(user, password)


def create_broker(settings: BaseServiceSettings, *, client_name: str) -> NatsBroker:
    """A broker for ``settings.nats_url`` that keeps reconnecting instead of giving up."""
    if not settings.nats_servers:
        raise UnavailableError("HINDSIGHT_NATS_URL is not set")
    broker_logger = logging.getLogger(f"hindsight.{client_name}.nats")
    if not any(isinstance(f, _IdleFetchTimeoutFilter) for f in broker_logger.filters):
        broker_logger.addFilter(_IdleFetchTimeoutFilter())
    servers, security = split_credentials(settings.nats_servers)
    return NatsBroker(
        servers=servers,
        security=security,
        name=client_name,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        graceful_timeout=10.0,
        logger=broker_logger,
    )


def _stream_configs(settings: BaseServiceSettings) -> list[StreamConfig]:
    common: dict[str, Any] = {
        "retention": RetentionPolicy.LIMITS,
        "storage": StorageType.FILE,
        "num_replicas": settings.stream_replicas,
        "discard": DiscardPolicy.OLD,
        "duplicate_window": _DUPLICATE_WINDOW_S,
    }
    return [
        StreamConfig(
            name=STREAM,
            subjects=list(SUBJECTS),
            max_age=settings.stream_max_age_s,
            description="Hindsight events (DESIGN.md)",
            **common,
        ),
        # Dead letters are evidence: no max age, an operator replays or deletes them.
        StreamConfig(
            name=DLQ_STREAM,
            subjects=["dlq.>"],
            description="Hindsight events that failed validation or handling",
            **common,
        ),
    ]


async def ensure_streams(broker: NatsBroker, settings: BaseServiceSettings) -> None:
    """Create the streams, or bring an existing one's configuration up to date."""
    js = broker.connection.jetstream()
    for config in _stream_configs(settings):
        assert config.name is not None
        try:
            await js.stream_info(config.name)
        except StreamNotFoundError:
            await js.add_stream(config)
            logger.info("stream created", extra={"stream": config.name})
        else:
            await js.update_stream(config)


async def publish_event(broker: NatsBroker, event: Event, *, timeout: float = 5.0) -> PubAck:
    """Publish to JetStream; the ack says ``duplicate=True`` when the key was seen already."""
    try:
        ack = await broker.publish(
            event.to_json_bytes(),
            subject=event.subject,
            headers={"Nats-Msg-Id": event.message_id(), "content-type": "application/json"},
            stream=STREAM,
            timeout=timeout,
        )
    except (NatsError, TimeoutError) as exc:
        raise UnavailableError(f"could not publish {event.subject}: {exc}") from exc
    EVENTS_PUBLISHED.labels(event.subject, str(bool(ack.duplicate)).lower()).inc()
    return ack


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_HEADER_CHARS else line[: _MAX_HEADER_CHARS - 3] + "..."


async def dead_letter(
    broker: NatsBroker,
    *,
    subject: str,
    body: bytes,
    error: BaseException,
    delivery_count: int,
    consumer: str,
    msg_id: str,
) -> None:
    """Put ``body`` unchanged on ``dlq.<subject>`` with the error in headers."""
    headers = {
        "Hindsight-Error": _one_line(str(error)) or type(error).__name__,
        "Hindsight-Error-Type": type(error).__name__,
        "Hindsight-Delivery-Count": str(delivery_count),
        "Hindsight-Subject": subject,
        "Hindsight-Consumer": consumer,
        "Hindsight-Failed-At": format_utc(datetime.now(UTC)),
        # A crash between this publish and the ack redelivers; the id keeps one dead letter.
        "Nats-Msg-Id": msg_id,
    }
    await broker.publish(body, subject=dlq_subject(subject), headers=headers, stream=DLQ_STREAM)


def retry_delay(delivery_count: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds before redelivery number ``delivery_count + 1``: exponential, capped."""
    return float(min(cap, base * 2 ** max(0, delivery_count - 1)))


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """How a durable consumer behaves; defaults suit most handlers."""

    max_deliveries: int = 5
    batch_size: int = 16
    ack_wait_s: float = 30.0
    max_ack_pending: int = 1000
    retry_base_s: float = 0.5
    max_workers: int = 1
    """Messages handled at once. Above 1, fetching goes on while handlers run (faststream's
    concurrent pull subscriber), so a handler that waits for a micro-batch sees company."""


def _delivery_info(msg: Any) -> tuple[int, str]:
    """(delivery count, stable id of this stream message) from JetStream metadata."""
    try:
        meta = msg.raw_message.metadata
        return int(meta.num_delivered), f"{meta.stream}:{meta.sequence.stream}"
    except Exception:  # in-memory test broker: no JetStream metadata
        return 1, str(msg.message_id or msg.correlation_id)


def subscribe_event(
    broker: NatsBroker,
    event_type: type[E],
    handler: Handler[E],
    *,
    durable: str,
    options: ConsumerOptions | None = None,
) -> Any:
    """Register a durable pull consumer of ``event_type.subject`` that calls ``handler``.

    Ack after the handler returns; bad input (validation, or ``InvalidInputError`` from the
    handler) goes to the DLQ at once; other errors are retried with backoff, then go to
    the DLQ at delivery ``max_deliveries``. The server never gives up on a message itself
    (``max_deliver=-1``), so a crash before the DLQ write cannot drop it.
    """
    opts = options or ConsumerOptions()
    subject = event_type.subject

    async def consume(msg: NatsMessage) -> None:
        delivery, msg_key = _delivery_info(msg)
        body: bytes = msg.body
        started = time.perf_counter()
        outcome = "ok"
        try:
            event = parse_event(subject, body)
            if not isinstance(event, event_type):  # pragma: no cover - registry mismatch
                raise InvalidInputError(f"expected {event_type.__name__}", field="subject")
            await handler(event)
        except InvalidInputError as exc:
            outcome = "dead_lettered"
            await _to_dlq(msg, body, exc, delivery, msg_key)
        except Exception as exc:
            if delivery >= opts.max_deliveries:
                outcome = "dead_lettered"
                logger.exception(
                    "giving up on message",
                    extra={"subject": subject, "consumer": durable, "delivery": delivery},
                )
                await _to_dlq(msg, body, exc, delivery, msg_key)
            else:
                outcome = "retried"
                logger.warning(
                    "handler failed, will retry: %s",
                    exc,
                    extra={"subject": subject, "consumer": durable, "delivery": delivery},
                )
                await msg.nack(delay=retry_delay(delivery, base=opts.retry_base_s))
        else:
            await msg.ack()
        finally:
            EVENTS_CONSUMED.labels(subject, durable, outcome).inc()
            EVENT_HANDLING_SECONDS.labels(subject, durable).observe(time.perf_counter() - started)

    async def _to_dlq(
        msg: Any, body: bytes, exc: BaseException, delivery: int, msg_key: str
    ) -> None:
        await dead_letter(
            broker,
            subject=subject,
            body=body,
            error=exc,
            delivery_count=delivery,
            consumer=durable,
            msg_id=f"{durable}:{msg_key}",
        )
        logger.warning(
            "dead-lettered: %s",
            _one_line(str(exc)),
            extra={"subject": subject, "consumer": durable, "delivery": delivery},
        )
        await msg.ack()

    consume.__name__ = f"consume_{durable}"
    return broker.subscriber(
        subject,
        stream=JStream(name=STREAM, declare=False),
        durable=durable,
        pull_sub=PullSub(batch_size=opts.batch_size, timeout=1.0),
        ack_policy=AckPolicy.MANUAL,
        config=ConsumerConfig(
            max_deliver=-1,
            ack_wait=opts.ack_wait_s,
            max_ack_pending=opts.max_ack_pending,
        ),
        max_workers=opts.max_workers,
        title=f"{durable}:{subject}",
        description=f"{durable} consumes {subject}",
    )(consume)
