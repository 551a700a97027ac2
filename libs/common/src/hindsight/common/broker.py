"""NATS JetStream plumbing shared by every service.

* :func:`create_broker` builds a faststream ``NatsBroker``;
* :func:`ensure_streams` creates or updates the ``HINDSIGHT`` and ``HINDSIGHT_DLQ`` streams;
* :func:`publish_event` publishes an event with ``Nats-Msg-Id`` = ``<subject>:<key>``;
* :func:`subscribe_event` registers a durable pull consumer whose handler gets a validated
  event; bad input and messages that still fail after ``max_deliveries`` go to
  ``dlq.<subject>`` with the original bytes, the error and the delivery count;
* :func:`subscribe_event_batch` does the same for a handler that takes a batch of events.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from faststream import AckPolicy, Context
from faststream.nats import ConsumerConfig, JStream, NatsBroker, PubAck, PullSub
from faststream.nats.annotations import NatsMessage
from faststream.nats.message import NatsBatchMessage
from faststream.nats.security import NatsUserPassword
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError as StreamNotFoundError

from hindsight.common.errors import InvalidInputError, UnavailableError
from hindsight.common.events import SUBJECTS, Event, dlq_subject, format_utc, parse_event
from hindsight.common.metrics import (
    CONSUME_OUTCOMES,
    EVENT_HANDLING_SECONDS,
    EVENTS_CONSUMED,
    EVENTS_PUBLISHED,
    init_series,
)
from hindsight.common.settings import BaseServiceSettings

__all__ = [
    "DLQ_HEADERS",
    "DLQ_STREAM",
    "STREAM",
    "Ackable",
    "ConsumerOptions",
    "Heartbeat",
    "create_broker",
    "dead_letter",
    "ensure_streams",
    "publish_event",
    "retry_delay",
    "split_credentials",
    "subscribe_event",
    "subscribe_event_batch",
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
_JS_API = "$JS.API"
_GC_THRESHOLD0 = 20_000
"""Allocations between young-generation collections in a process with a batch consumer
(CPython's default is 700). A batch of 1,000 events allocates some 100,000 objects, so
at 700 the collector ran ~150 times a batch, older generations included, and took ~40 %
of a consumer's CPU (measured: 60 -> 34 µs per signal.features event, consumer alone)."""
_PULL_GUARD_S = 5.0
"""How long past a pull request's expiry its answer may be late before the inbox is
dropped (a lost connection); the server itself ends every request at its expiry."""

E = TypeVar("E", bound=Event)
Handler = Callable[[E], Awaitable[None]]
BatchHandler = Callable[[list[E]], Awaitable[None]]
_BatchMessage = Annotated[NatsBatchMessage, Context("message")]


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
        # faststream's "Received"/"Processed" per message: two INFO lines per event filled
        # the registry's log (114 MB) and cost CPU at 400 predictions/s. Errors keep ERROR.
        log_level=logging.DEBUG,
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
            description="Hindsight events (docs/design.md)",
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
    """Create the streams, or bring an existing one's configuration up to date (and the
    ack wait of this broker's existing durables)."""
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
    await _update_consumers(broker)


async def _update_consumers(broker: NatsBroker) -> None:
    """Bring existing durables of this broker's subscribers to their declared ack wait.

    nats-py binds to an existing durable as it is, so without this a consumer created
    with an older (longer) ack wait would keep it for ever.
    """
    js = broker.connection.jetstream()
    for subscriber in broker.subscribers:
        declared = getattr(subscriber, "config", None)
        stream = getattr(getattr(subscriber, "stream", None), "name", None)
        durable = getattr(declared, "durable_name", None)
        if declared is None or not (durable and stream):
            continue
        try:
            current = (await js.consumer_info(stream, durable)).config
        except StreamNotFoundError:
            continue
        wanted = (declared.ack_wait, declared.max_ack_pending)
        if wanted == (current.ack_wait, current.max_ack_pending):
            continue
        current.ack_wait, current.max_ack_pending = wanted
        await js.add_consumer(stream, config=current)
        logger.info(
            "consumer updated", extra={"consumer": durable, "ack_wait_s": declared.ack_wait}
        )


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
    ack_wait_s: float = 15.0
    """Seconds the server waits for an ack before it redelivers. Short, so the messages of
    a consumer that crashed come back in seconds; a handler that runs longer keeps its
    messages by sending in-progress every ``ack_wait_s / 3`` (see :class:`Heartbeat`)."""
    max_ack_pending: int = 1000
    retry_base_s: float = 0.5
    max_workers: int = 1
    """Messages handled at once. Above 1, fetching goes on while handlers run (faststream's
    concurrent pull subscriber), so a handler that waits for a micro-batch sees company."""
    batch_pause_s: float = 0.0
    """:func:`subscribe_event_batch` only: pause after a full batch, so a catch-up over a
    large backlog leaves CPU to the rest of the machine between batches."""
    batch_max_wait_s: float = 1.0
    """:func:`subscribe_event_batch` only: how long a fetch waits for a batch to fill. The
    next batch is fetched while the handler works on this one, so over a backlog this wait
    costs nothing; at a trickle it is the most an event waits for company."""

    def __post_init__(self) -> None:
        for name in ("max_deliveries", "batch_size", "max_ack_pending", "max_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("ack_wait_s", "batch_max_wait_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


class Ackable(Protocol):
    """What a consumer does with one JetStream message (nats-py ``Msg``, faststream's)."""

    async def in_progress(self) -> None: ...


class Heartbeat:
    """Keeps the messages a consumer is still working on from being redelivered.

    Every ``every_s`` it sends JetStream in-progress (``+WPI``, which restarts the ack
    wait) for each message held longer than ``every_s``. One task per consumer, running
    only while something is held, so short handlers cost a dict entry per batch and
    nothing else.
    """

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._held: dict[int, tuple[Sequence[Ackable], float]] = {}
        self._task: asyncio.Task[None] | None = None

    @contextmanager
    def holding(self, messages: Sequence[Ackable]) -> Iterator[None]:
        """Heartbeat ``messages`` until the block ends (the caller acks after it)."""
        token = self.hold(messages)
        try:
            yield
        finally:
            self.release(token)

    def hold(self, messages: Sequence[Ackable]) -> int:
        """Start heartbeating ``messages``; :meth:`release` the returned token to stop."""
        token = id(messages)
        self._held[token] = (messages, time.monotonic())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._beat())
        return token

    def release(self, token: int) -> None:
        self._held.pop(token, None)

    async def _beat(self) -> None:
        while self._held:
            await asyncio.sleep(self.every_s)
            due = time.monotonic() - self.every_s
            for messages, since in list(self._held.values()):
                if since > due:
                    continue
                for message in messages:
                    try:
                        await message.in_progress()
                    except Exception as exc:  # disconnected: the ack wait decides, as before
                        logger.debug("in-progress failed: %s", exc)


class _Delivery:
    """One message as the settling code sees it, whichever object carried it.

    The delivery count and the stream sequence are read from the reply subject only when
    asked for (a retry or a dead letter): a healthy message never pays for them.
    """

    __slots__ = ("_info", "body", "message", "raw")

    def __init__(self, message: Any, raw: Any, body: bytes) -> None:
        self.message = message
        """faststream ``NatsMessage`` or nats-py ``Msg``: both have ack and in_progress."""
        self.raw = raw
        """The nats-py ``Msg`` (JetStream metadata, ``nak``)."""
        self.body = body
        self._info: tuple[int, str] | None = None

    def _delivery_info(self) -> tuple[int, str]:
        if self._info is None:
            try:
                meta = self.raw.metadata
                self._info = int(meta.num_delivered), f"{meta.stream}:{meta.sequence.stream}"
            except Exception:  # in-memory test broker: no JetStream metadata
                message = self.message
                fallback = getattr(message, "message_id", None) or getattr(
                    message, "correlation_id", None
                )
                self._info = 1, str(fallback or id(self.raw))
        return self._info

    @property
    def count(self) -> int:
        """How many times the server has delivered this message (1 = first time)."""
        return self._delivery_info()[0]

    @property
    def key(self) -> str:
        """A stable id of this stream message: ``<stream>:<stream sequence>``."""
        return self._delivery_info()[1]

    async def ack(self) -> None:
        await self.message.ack()

    async def nack(self, *, delay: float | None = None) -> None:
        """Negative ack: redeliver after ``delay`` seconds (at once when None)."""
        if self.message is self.raw:
            await self.raw.nak(delay=delay)
        else:
            await self.message.nack(delay=delay)


def _from_faststream(msg: Any) -> _Delivery:
    return _Delivery(msg, msg.raw_message, msg.body)


def _from_nats(msg: Any) -> _Delivery:
    return _Delivery(msg, msg, msg.data)


async def _raw_body(msg: Any) -> Any:
    """Decoder that leaves the body alone: the event model parses it, once."""
    return msg.body


class _Consumer(Generic[E]):
    """Parsing, acks, retries and dead letters of one durable consumer (one home)."""

    def __init__(
        self, broker: NatsBroker, event_type: type[E], *, durable: str, opts: ConsumerOptions
    ) -> None:
        self.broker = broker
        self.event_type = event_type
        self.subject = event_type.subject
        self.durable = durable
        self.opts = opts
        self.heartbeat = Heartbeat(opts.ack_wait_s / 3)
        self.subscriber: Any = None
        # At 0 from the start, so the first dead letter moves increase() (HindsightDlqGrowing).
        init_series(EVENTS_CONSUMED, [self.subject], [durable], CONSUME_OUTCOMES)

    def _extra(self, delivery: _Delivery) -> dict[str, Any]:
        return {"subject": self.subject, "consumer": self.durable, "delivery": delivery.count}

    def count(self, outcome: str, n: int = 1) -> None:
        EVENTS_CONSUMED.labels(self.subject, self.durable, outcome).inc(n)

    async def parse(self, delivery: _Delivery) -> E | None:
        """The event, or None after dead-lettering bad input (and acking it)."""
        try:
            event = parse_event(self.subject, delivery.body)
            if not isinstance(event, self.event_type):  # pragma: no cover - registry mismatch
                raise InvalidInputError(f"expected {self.event_type.__name__}", field="subject")
        except InvalidInputError as exc:
            await self.to_dlq(delivery, exc)
            return None
        return event

    async def handle(self, delivery: _Delivery, event: E, handler: Handler[E]) -> None:
        """Call the handler for one message and settle it: ack, retry later, or DLQ."""
        try:
            with self.heartbeat.holding([delivery.message]):
                await handler(event)
        except Exception as exc:
            await self.failed(delivery, exc)
        else:
            await delivery.ack()
            self.count("ok")

    async def failed(self, delivery: _Delivery, exc: Exception) -> None:
        """Bad input to the DLQ now; other errors retried with backoff, then to the DLQ."""
        if isinstance(exc, InvalidInputError):
            await self.to_dlq(delivery, exc)
        elif delivery.count >= self.opts.max_deliveries:
            logger.error("giving up on message", exc_info=exc, extra=self._extra(delivery))
            await self.to_dlq(delivery, exc)
        else:
            logger.warning("handler failed, will retry: %s", exc, extra=self._extra(delivery))
            await delivery.nack(delay=retry_delay(delivery.count, base=self.opts.retry_base_s))
            self.count("retried")

    async def to_dlq(self, delivery: _Delivery, exc: BaseException) -> None:
        await dead_letter(
            self.broker,
            subject=self.subject,
            body=delivery.body,
            error=exc,
            delivery_count=delivery.count,
            consumer=self.durable,
            msg_id=f"{self.durable}:{delivery.key}",
        )
        logger.warning("dead-lettered: %s", _one_line(str(exc)), extra=self._extra(delivery))
        await delivery.ack()
        self.count("dead_lettered")

    def observe(self, seconds: float, n: int = 1) -> None:
        histogram = EVENT_HANDLING_SECONDS.labels(self.subject, self.durable)
        for _ in range(n):
            histogram.observe(seconds / n)

    def register(self, consume: Callable[..., Awaitable[None]], pull_sub: PullSub) -> Any:
        """Subscribe ``consume``; the faststream subscriber is kept as ``self.subscriber``."""
        consume.__name__ = f"consume_{self.durable}"
        self.subscriber = self.broker.subscriber(
            self.subject,
            stream=JStream(name=STREAM, declare=False),
            durable=self.durable,
            pull_sub=pull_sub,
            ack_policy=AckPolicy.MANUAL,
            config=ConsumerConfig(
                max_deliver=-1,
                ack_wait=self.opts.ack_wait_s,
                max_ack_pending=self.opts.max_ack_pending,
            ),
            decoder=_raw_body,
            max_workers=None if pull_sub.batch else self.opts.max_workers,
            title=f"{self.durable}:{self.subject}",
            description=f"{self.durable} consumes {self.subject}",
        )
        return self.subscriber(consume)


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
    (``max_deliver=-1``), so a crash before the DLQ write cannot drop it. While the handler
    runs, the message is kept with in-progress heartbeats, so ``ack_wait_s`` can be short.
    """
    opts = options or ConsumerOptions()
    consumer = _Consumer(broker, event_type, durable=durable, opts=opts)

    async def consume(msg: NatsMessage) -> None:
        delivery = _from_faststream(msg)
        started = time.perf_counter()
        try:
            event = await consumer.parse(delivery)
            if event is not None:
                await consumer.handle(delivery, event, handler)
        finally:
            consumer.observe(time.perf_counter() - started)

    return consumer.register(consume, PullSub(batch_size=opts.batch_size, timeout=1.0))


def subscribe_event_batch(
    broker: NatsBroker,
    event_type: type[E],
    handler: BatchHandler[E],
    *,
    durable: str,
    options: ConsumerOptions | None = None,
) -> Any:
    """Like :func:`subscribe_event`, but ``handler`` gets the valid events of one fetch.

    Up to ``batch_size`` messages are fetched at once (waiting at most
    ``batch_max_wait_s`` for a batch to fill). Bad input goes to the DLQ and is acked
    without failing the others; the rest are acked after ``handler`` returns. When the
    handler raises, each event of the batch is handled alone, so one poison message is
    retried or dead-lettered by itself and the others go through.

    Over a backlog (a full batch) the next batch is fetched and parsed while the handler
    works on this one, so the consumer's own work overlaps the handler's waits (a
    database, Chroma); batches are still handled one at a time, in order. Keep
    ``max_ack_pending`` at two batches or more, or the read-ahead gets nothing.
    """
    opts = options or ConsumerOptions()
    _collect_garbage_less_often()
    batches = _BatchConsumer(_Consumer(broker, event_type, durable=durable, opts=opts), handler)
    pull_sub = PullSub(batch_size=opts.batch_size, timeout=opts.batch_max_wait_s, batch=True)

    async def consume(batch: _BatchMessage) -> None:
        await batches.consume(batch)

    return batches.consumer.register(consume, pull_sub)


def _collect_garbage_less_often() -> None:
    """Raise the young generation's threshold to ``_GC_THRESHOLD0`` (never lower it).

    Process-wide, on purpose: the batch consumers' allocations are the process's. Cycles
    are still collected, only in fewer, larger passes; memory grows by what 20,000 young
    objects hold at most.
    """
    threshold0, threshold1, threshold2 = gc.get_threshold()
    if 0 < threshold0 < _GC_THRESHOLD0:  # 0: collection disabled; leave it so
        gc.set_threshold(_GC_THRESHOLD0, threshold1, threshold2)


class _Puller:
    """Pulls batches of one durable consumer into an inbox of its own (JetStream's pull
    protocol: ``CONSUMER.MSG.NEXT`` with ``batch`` and ``expires``).

    nats-py's ``fetch`` waits for each message with a task, a timer and a uuid of its own,
    about a tenth of a consumer's CPU per event; here messages are collected by the
    subscription's callback and one timer guards the whole pull.
    """

    def __init__(self, nc: NatsClient, *, stream: str, durable: str) -> None:
        self._nc = nc
        self._next = f"{_JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._sub: Subscription | None = None
        self._got: list[Msg] = []
        self._want = 0
        self._done: asyncio.Future[None] | None = None

    async def pull(self, n: int, wait_s: float) -> list[Msg]:
        """Up to ``n`` messages: those available now, then what comes within ``wait_s``."""
        if self._sub is None:
            self._sub = await self._nc.subscribe(self._nc.new_inbox(), cb=self._on_message)
        self._got, self._want = [], n
        done = self._done = asyncio.get_running_loop().create_future()
        request = {"batch": n, "expires": max(1_000_000, int(wait_s * 1e9))}
        try:
            await self._nc.publish(
                self._next, json.dumps(request).encode(), reply=self._sub.subject
            )
            async with asyncio.timeout(wait_s + _PULL_GUARD_S):
                await done
        except TimeoutError:
            # No answer, not even the expiry's 408: a new inbox next time, so that a late
            # answer to this request cannot mix with the next one. What came is kept.
            logger.debug("pull request unanswered; dropping its inbox")
            await self.close()
        finally:
            self._done = None
        got, self._got = self._got, []
        return got

    async def _on_message(self, msg: Msg) -> None:
        done = self._done
        if done is None or done.done():
            return  # nothing asked for it (after a dropped inbox): redelivered after ack wait
        if not msg.data and msg.headers and "Status" in msg.headers:
            if msg.headers["Status"] != "100":  # 404 / 408 / 409 end the request
                done.set_result(None)
            return
        self._got.append(msg)
        if len(self._got) >= self._want:
            done.set_result(None)

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except NatsError as exc:  # the connection is closing anyway
                logger.debug("unsubscribe failed: %s", exc)


@dataclass(slots=True)
class _Batch(Generic[E]):
    """One fetched batch between parsing and settling."""

    size: int
    """Messages fetched, bad input included."""
    parsed: list[tuple[_Delivery, E]]
    hold: int | None
    """Heartbeat token of the parsed messages (None when there are none)."""
    busy_s: float
    """Seconds spent on it so far (parsing), waits excluded."""


class _BatchConsumer(Generic[E]):
    """The batch loop of one durable consumer: parse, hand over, settle, read ahead."""

    def __init__(self, consumer: _Consumer[E], handler: BatchHandler[E]) -> None:
        self.consumer = consumer
        self.handler = handler
        self.opts = consumer.opts
        self._puller: _Puller | None = None

    async def consume(self, batch: NatsBatchMessage) -> None:
        """faststream's handler: this fetch, then further full batches while they last."""
        current: _Batch[E] | None = await self.prepare(batch.raw_message)
        while current is not None:
            ahead = self._read_ahead(current)
            try:
                await self.settle(current)
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                    ahead.add_done_callback(self._drop)
                raise
            if ahead is None:
                if self.opts.batch_pause_s > 0 and current.size >= self.opts.batch_size:
                    # A full batch means a backlog: leave the CPU to others for a moment.
                    await asyncio.sleep(self.opts.batch_pause_s)
                return
            current = await ahead
            if not self.consumer.subscriber.running:
                if current is not None:
                    await self.give_back(current)  # stopping: another consumer takes them
                if self._puller is not None:
                    await self._puller.close()
                return

    def _read_ahead(self, current: _Batch[E]) -> asyncio.Task[_Batch[E] | None] | None:
        """Start fetching the next batch now, when this one was full (a backlog)."""
        subscriber = self.consumer.subscriber
        if (
            current.size < self.opts.batch_size
            or self.opts.batch_pause_s > 0
            or getattr(subscriber, "subscription", None) is None  # in-memory test broker
            or not subscriber.running
        ):
            return None
        return asyncio.get_running_loop().create_task(self._fetch())

    async def _fetch(self) -> _Batch[E] | None:
        """Up to ``batch_size`` messages within ``batch_max_wait_s``, parsed; None if none."""
        if self._puller is None:
            consumer = self.consumer
            self._puller = _Puller(
                consumer.broker.connection, stream=STREAM, durable=consumer.durable
            )
        try:
            messages = await self._puller.pull(self.opts.batch_size, self.opts.batch_max_wait_s)
        except NatsError as exc:
            # Disconnected or the consumer is away: what was fetched is not acked, so
            # the server redelivers it; faststream's own fetch loop takes over.
            logger.debug("read-ahead fetch failed: %s", exc)
            return None
        return await self.prepare(messages) if messages else None

    async def prepare(self, messages: Sequence[Any]) -> _Batch[E]:
        """Parse every message; bad input goes to the DLQ (acked) at once."""
        started = time.perf_counter()
        consumer = self.consumer
        parsed: list[tuple[_Delivery, E]] = []
        for raw in messages:
            delivery = _from_nats(raw)
            event = await consumer.parse(delivery)
            if event is not None:
                parsed.append((delivery, event))
        # Held from now: a batch read ahead waits for the one before it.
        hold = consumer.heartbeat.hold([d.message for d, _ in parsed]) if parsed else None
        return _Batch(len(messages), parsed, hold, time.perf_counter() - started)

    async def settle(self, batch: _Batch[E]) -> None:
        """Call the handler on the batch; ack, or handle each event alone if it raised."""
        started = time.perf_counter()
        consumer, parsed = self.consumer, batch.parsed
        try:
            if parsed:
                await self.handler([event for _, event in parsed])
        except Exception as exc:
            try:
                if len(parsed) == 1:
                    await consumer.failed(parsed[0][0], exc)
                else:
                    logger.warning(
                        "batch of %d failed, handling one by one: %s",
                        len(parsed),
                        exc,
                        extra={"subject": consumer.subject, "consumer": consumer.durable},
                    )
                    for delivery, event in parsed:
                        await consumer.handle(delivery, event, self._one)
            finally:
                self._release(batch)
        else:
            self._release(batch)
            for delivery, _ in parsed:
                await delivery.ack()
            consumer.count("ok", len(parsed))
        consumer.observe(batch.busy_s + time.perf_counter() - started, batch.size)

    async def give_back(self, batch: _Batch[E]) -> None:
        """Negative-ack a batch that will not be handled here (redelivered at once)."""
        self._release(batch)
        for delivery, _ in batch.parsed:
            try:
                await delivery.nack()
            except Exception as exc:  # disconnected: the ack wait redelivers them anyway
                logger.debug("nak failed: %s", exc)
                return

    def _drop(self, task: asyncio.Task[_Batch[E] | None]) -> None:
        """A read-ahead abandoned on the way out: stop heartbeating what it fetched."""
        if not task.cancelled() and task.exception() is None and (batch := task.result()):
            self._release(batch)

    def _release(self, batch: _Batch[E]) -> None:
        if batch.hold is not None:
            self.consumer.heartbeat.release(batch.hold)
            batch.hold = None

    async def _one(self, event: E) -> None:
        await self.handler([event])
