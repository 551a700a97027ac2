"""JetStream plumbing against a real nats-server: streams, dedupe, retries, dead letters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest
from faststream.nats import JStream, NatsBroker, TestNatsBroker
from faststream.nats.annotations import NatsMessage
from nats.js.api import StorageType

from hindsight.common.broker import (
    DLQ_STREAM,
    STREAM,
    ConsumerOptions,
    Heartbeat,
    create_broker,
    ensure_streams,
    publish_event,
    retry_delay,
    split_credentials,
    subscribe_event,
    subscribe_event_batch,
)
from hindsight.common.errors import InvalidInputError
from hindsight.common.events import PngCreated
from hindsight.common.settings import BaseServiceSettings
from hindsight.devstack.pytest_plugin import delete_hindsight_streams

GOOD_PNG = {
    "schema_version": 1,
    "occurred_at": "2026-11-21T10:00:00Z",
    "source": "chart-renderer",
    "file_path": "/charts/run-1/EURUSD_1h_0001.png",
    "run_id": "run-1",
    "image_type": "original",
}


@pytest.mark.unit
def test_retry_delay_grows_and_is_capped() -> None:
    assert [retry_delay(n, base=0.5, cap=4) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


@pytest.fixture
def settings(nats_url: str) -> BaseServiceSettings:
    return BaseServiceSettings(nats_url=nats_url, max_deliveries=3)


RunBroker = Callable[[Callable[[NatsBroker], None]], Awaitable[NatsBroker]]


@pytest.fixture
async def run_broker(
    settings: BaseServiceSettings, jetstream_reset: None
) -> AsyncIterator[RunBroker]:
    """Start a broker with the subscribers a test registers, stop it afterwards."""
    brokers: list[NatsBroker] = []

    async def start(register: Callable[[NatsBroker], None]) -> NatsBroker:
        broker = create_broker(settings, client_name="test")
        register(broker)
        await broker.connect()
        await ensure_streams(broker, settings)
        await broker.start()
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        await broker.stop()


async def _dead_letters(nats_url: str, subject: str, expected: int) -> list[Any]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(subject, stream=DLQ_STREAM)
        got: list[Any] = []
        deadline = asyncio.get_running_loop().time() + 20
        while len(got) < expected and asyncio.get_running_loop().time() < deadline:
            try:
                got += await sub.fetch(expected - len(got), timeout=0.5)
            except TimeoutError:
                continue
        for msg in got:
            await msg.ack()
        return got
    finally:
        await nc.close()


@pytest.mark.integration
async def test_streams_are_created_then_updated(
    settings: BaseServiceSettings, run_broker: RunBroker, nats_url: str
) -> None:
    broker = await run_broker(lambda b: None)
    info = await broker.connection.jetstream().stream_info(STREAM)
    assert info.config.storage == StorageType.FILE
    assert "png.created" in (info.config.subjects or [])
    assert info.config.duplicate_window == 120

    changed = settings.model_copy(update={"stream_max_age_s": 3600.0})
    await ensure_streams(broker, changed)  # second call: update, not an error
    info = await broker.connection.jetstream().stream_info(STREAM)
    assert info.config.max_age == 3600
    dlq = await broker.connection.jetstream().stream_info(DLQ_STREAM)
    assert dlq.config.subjects == ["dlq.>"]


@pytest.mark.integration
async def test_duplicate_publish_is_stored_once(run_broker: RunBroker) -> None:
    broker = await run_broker(lambda b: None)
    event = PngCreated.model_validate(GOOD_PNG)
    first = await publish_event(broker, event)
    again = await publish_event(broker, PngCreated.model_validate(GOOD_PNG))
    assert not first.duplicate and again.duplicate
    info = await broker.connection.jetstream().stream_info(STREAM)
    assert info.state.messages == 1


@pytest.mark.integration
async def test_invalid_event_goes_to_dlq_with_the_error(
    run_broker: RunBroker, nats_url: str
) -> None:
    handled: list[PngCreated] = []

    async def handle(event: PngCreated) -> None:
        handled.append(event)

    await run_broker(lambda b: subscribe_event(b, PngCreated, handle, durable="t_dlq"))
    bad = json.dumps({k: v for k, v in GOOD_PNG.items() if k != "run_id"}).encode()
    good = json.dumps(GOOD_PNG).encode()

    # A plain NATS client, as an upstream tool would publish.
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.publish("png.created", bad, headers={"Nats-Msg-Id": "bad-1"})
    await js.publish("png.created", good, headers={"Nats-Msg-Id": "good-1"})
    await nc.close()

    [dead] = await _dead_letters(nats_url, "dlq.png.created", 1)
    assert dead.data == bad, "the original bytes, unchanged"
    assert "run_id" in dead.headers["Hindsight-Error"]
    assert dead.headers["Hindsight-Delivery-Count"] == "1"
    assert dead.headers["Hindsight-Subject"] == "png.created"
    assert dead.headers["Hindsight-Consumer"] == "t_dlq"
    for _ in range(100):
        if handled:
            break
        await asyncio.sleep(0.05)
    assert [e.file_path for e in handled] == [GOOD_PNG["file_path"]]


@pytest.mark.integration
async def test_failing_handler_is_retried_then_dead_lettered(
    run_broker: RunBroker, nats_url: str
) -> None:
    calls: list[int] = []

    async def always_fails(event: PngCreated) -> None:
        calls.append(1)
        raise RuntimeError("disk full")

    options = ConsumerOptions(max_deliveries=3, retry_base_s=0.05)
    broker = await run_broker(
        lambda b: subscribe_event(b, PngCreated, always_fails, durable="t_retry", options=options)
    )
    await publish_event(broker, PngCreated.model_validate(GOOD_PNG))
    [dead] = await _dead_letters(nats_url, "dlq.png.created", 1)
    assert len(calls) == 3
    assert dead.headers["Hindsight-Delivery-Count"] == "3"
    assert dead.headers["Hindsight-Error"] == "disk full"
    assert dead.headers["Hindsight-Error-Type"] == "RuntimeError"
    assert json.loads(dead.data)["file_path"] == GOOD_PNG["file_path"]


@pytest.mark.integration
async def test_transient_failure_is_retried_and_not_dead_lettered(
    run_broker: RunBroker, nats_url: str
) -> None:
    calls: list[int] = []
    done = asyncio.Event()

    async def flaky(event: PngCreated) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database restarting")
        done.set()

    options = ConsumerOptions(max_deliveries=3, retry_base_s=0.05)
    broker = await run_broker(
        lambda b: subscribe_event(b, PngCreated, flaky, durable="t_flaky", options=options)
    )
    await publish_event(broker, PngCreated.model_validate(GOOD_PNG))
    await asyncio.wait_for(done.wait(), 20)
    await asyncio.sleep(0.3)
    assert len(calls) == 2
    info = await broker.connection.jetstream().consumer_info(STREAM, "t_flaky")
    assert info.num_ack_pending == 0 and info.num_pending == 0
    dlq = await broker.connection.jetstream().stream_info(DLQ_STREAM)
    assert dlq.state.messages == 0


@pytest.mark.integration
async def test_handler_bad_input_is_dead_lettered_without_retry(
    run_broker: RunBroker, nats_url: str
) -> None:
    calls: list[int] = []

    async def rejects(event: PngCreated) -> None:
        calls.append(1)
        raise InvalidInputError("outside HINDSIGHT_IMAGE_ROOTS", field="file_path")

    broker = await run_broker(lambda b: subscribe_event(b, PngCreated, rejects, durable="t_reject"))
    await publish_event(broker, PngCreated.model_validate(GOOD_PNG))
    [dead] = await _dead_letters(nats_url, "dlq.png.created", 1)
    assert calls == [1]
    assert dead.headers["Hindsight-Error"] == "file_path: outside HINDSIGHT_IMAGE_ROOTS"


@pytest.fixture(
    params=[
        pytest.param(False, marks=pytest.mark.unit, id="memory"),
        pytest.param(True, marks=[pytest.mark.integration, pytest.mark.connected], id="real"),
    ]
)
async def with_real(request: pytest.FixtureRequest) -> AsyncIterator[bool]:
    """faststream's ``with_real`` pattern: the same test in memory and on a real server."""
    if request.param:
        nats_url = request.getfixturevalue("nats_url")
        client = await nats.connect(nats_url)
        await delete_hindsight_streams(client)
        await client.close()
        setup = create_broker(BaseServiceSettings(nats_url=nats_url), client_name="setup")
        await setup.connect()
        await ensure_streams(setup, BaseServiceSettings(nats_url=nats_url))
        await setup.stop()
    yield bool(request.param)


async def test_bad_input_is_dead_lettered_in_memory_and_on_a_real_server(
    with_real: bool, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("nats_url") if with_real else "nats://127.0.0.1:1"
    broker = create_broker(BaseServiceSettings(nats_url=url), client_name="t")
    handled: list[PngCreated] = []
    dead: list[tuple[bytes, dict[str, str]]] = []

    async def handle(event: PngCreated) -> None:
        handled.append(event)

    async def collect(msg: NatsMessage) -> None:
        dead.append((msg.body, msg.headers))

    subscribe_event(broker, PngCreated, handle, durable="t_modes")
    broker.subscriber("dlq.png.created", stream=JStream(DLQ_STREAM, declare=False))(collect)
    bad = json.dumps({**GOOD_PNG, "image_type": "sketch"}).encode()
    async with TestNatsBroker(broker, with_real=with_real) as test_broker:
        await test_broker.publish(bad, "png.created", stream=STREAM)
        await test_broker.publish(json.dumps(GOOD_PNG).encode(), "png.created", stream=STREAM)
        for _ in range(200):
            if dead and handled:
                break
            await asyncio.sleep(0.05)
    [(body, headers)] = dead
    assert body == bad
    assert headers["Hindsight-Error"].startswith("png.created: image_type:")
    assert [e.run_id for e in handled] == ["run-1"]


@pytest.mark.unit
def test_idle_fetch_timeout_is_not_an_error_but_other_errors_are(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    create_broker(BaseServiceSettings(nats_url="nats://127.0.0.1:1"), client_name="filtered")
    log = logging.getLogger("hindsight.filtered.nats")
    caplog.set_level(logging.INFO, logger="hindsight.filtered.nats")
    for exc in (TimeoutError(), RuntimeError("real trouble")):
        try:
            raise exc
        except Exception:
            log.exception("Task-1 raised an exception, retrying...")
    [record] = caplog.records  # the idle timeout was dropped below INFO
    assert record.levelname == "ERROR"
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


@pytest.mark.integration
async def test_max_workers_handles_several_messages_at_once(run_broker: RunBroker) -> None:
    # batch_size=1: without max_workers one message at a time; with 4 workers, four
    # handlers must be in flight together (each waits until it sees the others).
    in_flight = 0
    peak = 0
    four_together = asyncio.Event()

    async def gather_four(event: PngCreated) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight >= 4:
            four_together.set()
        try:
            await asyncio.wait_for(four_together.wait(), 10)
        finally:
            in_flight -= 1

    options = ConsumerOptions(batch_size=1, max_workers=4)
    broker = await run_broker(
        lambda b: subscribe_event(b, PngCreated, gather_four, durable="t_workers", options=options)
    )
    for i in range(4):
        event = PngCreated.model_validate({**GOOD_PNG, "file_path": f"/charts/w/{i}.png"})
        await publish_event(broker, event)
    await asyncio.wait_for(four_together.wait(), 20)
    assert peak == 4
    for _ in range(100):
        info = await broker.connection.jetstream().consumer_info(STREAM, "t_workers")
        if info.num_ack_pending == 0 and info.num_pending == 0:
            break
        await asyncio.sleep(0.05)
    assert info.num_ack_pending == 0 and info.num_pending == 0, "all four acked"


@pytest.mark.unit
def test_url_credentials_become_connection_options_for_every_server() -> None:
    servers, security = split_credentials(
        ["tls://trainer:p%40ss@nats-0:4222", "tls://trainer:p%40ss@nats-1:4222"]
    )
    assert servers == ["tls://nats-0:4222", "tls://nats-1:4222"]
    assert security is not None
    assert (security.username, security.password) == ("trainer", "p%40ss")  # verbatim
    # Nothing to move, or nothing one set of options could say: the URLs stay as given.
    assert split_credentials(["nats://127.0.0.1:4222"]) == (["nats://127.0.0.1:4222"], None)
    assert split_credentials(["nats://tok@a:4222"]) == (["nats://tok@a:4222"], None)
    mixed = ["nats://a:x@h1:4222", "nats://b:y@h2:4222"]
    assert split_credentials(mixed) == (mixed, None)


@pytest.mark.integration
async def test_an_oversized_or_nul_id_is_dead_lettered_on_first_delivery(
    run_broker: RunBroker, nats_url: str
) -> None:
    """Issue 13: such ids used to pass validation and fail in PostgreSQL after every
    redelivery; now the contract refuses them and the DLQ header names the field."""
    handled: list[PngCreated] = []

    async def handle(event: PngCreated) -> None:
        handled.append(event)

    await run_broker(lambda b: subscribe_event(b, PngCreated, handle, durable="t_limits"))
    long_id = json.dumps({**GOOD_PNG, "run_id": "r" * 8192}).encode()
    nul_id = json.dumps({**GOOD_PNG, "trade_id": "trade\x00-7"}).encode()
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.publish("png.created", long_id, headers={"Nats-Msg-Id": "long-1"})
    await js.publish("png.created", nul_id, headers={"Nats-Msg-Id": "nul-1"})
    await nc.close()

    dead = await _dead_letters(nats_url, "dlq.png.created", 2)
    by_body = {msg.data: msg.headers for msg in dead}
    assert set(by_body) == {long_id, nul_id}, "the original bytes, unchanged"
    assert by_body[long_id]["Hindsight-Error"].startswith("png.created: run_id: String should")
    assert by_body[nul_id]["Hindsight-Error"].startswith("png.created: trade_id: Input should not")
    assert {h["Hindsight-Delivery-Count"] for h in by_body.values()} == {"1"}
    assert handled == []


# --- subscribe_event_batch ---------------------------------------------------------------


def _png(i: int, **fields: Any) -> PngCreated:
    return PngCreated.model_validate({**GOOD_PNG, "file_path": f"/charts/b/{i:04d}.png", **fields})


async def _publish_raw(nats_url: str, bodies: list[tuple[str, bytes]]) -> None:
    """Create the streams, then publish (message id, body) pairs in order, as an upstream
    tool would: a backlog waiting for the consumer."""
    settings = BaseServiceSettings(nats_url=nats_url)
    setup = create_broker(settings, client_name="setup")
    await setup.connect()
    await ensure_streams(setup, settings)
    await setup.stop()
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        for msg_id, body in bodies:
            await js.publish("png.created", body, headers={"Nats-Msg-Id": msg_id})
    finally:
        await nc.close()


async def _settled(broker: NatsBroker, durable: str) -> Any:
    """The consumer's info once nothing is pending or unacked (or after ~10 s)."""
    for _ in range(200):
        info = await broker.connection.jetstream().consumer_info(STREAM, durable)
        if info.num_ack_pending == 0 and info.num_pending == 0:
            return info
        await asyncio.sleep(0.05)
    return info


@pytest.mark.unit
def test_a_batch_consumer_makes_young_garbage_collections_rarer_never_more_frequent() -> None:
    import gc

    saved = gc.get_threshold()
    broker = create_broker(BaseServiceSettings(nats_url="nats://127.0.0.1:1"), client_name="gc")

    async def handle(events: list[PngCreated]) -> None:
        del events

    try:
        gc.set_threshold(700, 10, 10)
        subscribe_event_batch(broker, PngCreated, handle, durable="t_gc1")
        assert gc.get_threshold() == (20_000, 10, 10)
        gc.set_threshold(100_000, 5, 5)
        subscribe_event_batch(broker, PngCreated, handle, durable="t_gc2")
        assert gc.get_threshold() == (100_000, 5, 5)
    finally:
        gc.set_threshold(*saved)


@pytest.mark.unit
def test_consumer_options_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ConsumerOptions(batch_size=0)
    with pytest.raises(ValueError, match="batch_max_wait_s"):
        ConsumerOptions(batch_max_wait_s=0)


class _FakeMessage:
    def __init__(self) -> None:
        self.beats = 0

    async def in_progress(self) -> None:
        self.beats += 1


@pytest.mark.unit
async def test_heartbeat_keeps_every_message_of_a_held_batch_until_released() -> None:
    heartbeat = Heartbeat(every_s=0.01)
    held, other = [_FakeMessage(), _FakeMessage()], [_FakeMessage()]
    token = heartbeat.hold(held)
    with heartbeat.holding(other):
        for _ in range(500):
            if all(m.beats >= 2 for m in [*held, *other]):
                break
            await asyncio.sleep(0.01)
    assert all(m.beats >= 2 for m in [*held, *other])
    heartbeat.release(token)
    before = [m.beats for m in held]
    await asyncio.sleep(0.05)  # nothing held: the beat task has ended
    assert [m.beats for m in held] == before
    assert heartbeat._task is not None and heartbeat._task.done()


@pytest.mark.integration
async def test_batch_consumer_hands_full_batches_in_order_and_reads_ahead(
    run_broker: RunBroker, nats_url: str
) -> None:
    """A backlog of 5 batches: each handler call gets a full batch, in publish order, and
    while it runs the next batch is already fetched (2 batches unacked at once)."""
    size, n = 10, 50
    await _publish_raw(nats_url, [(f"b-{i}", _png(i).to_json_bytes()) for i in range(n)])
    batches: list[list[str]] = []
    ahead: list[int] = []
    done = asyncio.Event()
    broker: NatsBroker | None = None

    async def handle(events: list[PngCreated]) -> None:
        batches.append([e.file_path for e in events])
        if len(batches) == 2:  # the third batch is on its way before this one is acked
            assert broker is not None
            for _ in range(200):
                info = await broker.connection.jetstream().consumer_info(STREAM, "t_batch")
                if info.num_ack_pending == 2 * size:
                    break
                await asyncio.sleep(0.02)
            ahead.append(info.num_ack_pending)
        if sum(map(len, batches)) >= n:
            done.set()

    options = ConsumerOptions(batch_size=size, max_ack_pending=4 * size)
    broker = await run_broker(
        lambda b: subscribe_event_batch(b, PngCreated, handle, durable="t_batch", options=options)
    )
    await asyncio.wait_for(done.wait(), 30)
    assert [len(b) for b in batches] == [size] * (n // size)
    assert [p for b in batches for p in b] == [_png(i).file_path for i in range(n)]
    assert ahead == [2 * size]
    info = await _settled(broker, "t_batch")
    assert (info.num_ack_pending, info.num_pending, info.num_redelivered) == (0, 0, 0)


@pytest.mark.integration
async def test_batch_consumer_dead_letters_bad_input_and_a_poison_message_alone(
    run_broker: RunBroker, nats_url: str
) -> None:
    """Bad JSON fields go to the DLQ at once; a message that makes the handler fail is
    retried alone and dead-lettered, and every other event of its batch goes through."""
    bodies = [(f"p-{i}", _png(i).to_json_bytes()) for i in range(12)]
    bad = json.dumps({**GOOD_PNG, "image_type": "sketch"}).encode()
    poison = _png(99, run_id="poison")
    bodies[3] = ("p-bad", bad)
    bodies[7] = ("p-poison", poison.to_json_bytes())
    await _publish_raw(nats_url, bodies)
    handled: list[str] = []
    calls: list[int] = []

    async def handle(events: list[PngCreated]) -> None:
        calls.append(len(events))
        if any(e.run_id == "poison" for e in events):
            raise RuntimeError("poison")
        handled.extend(e.file_path for e in events)

    options = ConsumerOptions(batch_size=6, max_deliveries=2, retry_base_s=0.05)
    broker = await run_broker(
        lambda b: subscribe_event_batch(b, PngCreated, handle, durable="t_poison", options=options)
    )
    dead = await _dead_letters(nats_url, "dlq.png.created", 2)
    by_body = {msg.data: msg.headers for msg in dead}
    assert set(by_body) == {bad, poison.to_json_bytes()}
    assert by_body[bad]["Hindsight-Error"].startswith("png.created: image_type:")
    assert by_body[bad]["Hindsight-Delivery-Count"] == "1"
    assert by_body[poison.to_json_bytes()]["Hindsight-Error"] == "poison"
    assert by_body[poison.to_json_bytes()]["Hindsight-Delivery-Count"] == "2"
    info = await _settled(broker, "t_poison")
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    good = [_png(i).file_path for i in range(12) if i not in (3, 7)]
    assert sorted(handled) == sorted(good), "each good event handled once"
    # The first batch less its bad input, the poisoned batch whole, then one by one.
    assert calls[:2] == [5, 6] and set(calls[2:]) == {1}


@pytest.mark.integration
async def test_batch_consumer_stopped_mid_backlog_loses_nothing(
    run_broker: RunBroker, nats_url: str
) -> None:
    """Stopped while a batch read ahead waits: those messages are given back (nak), and a
    new consumer on the same durable handles every event (at least once)."""
    size, n = 10, 60
    await _publish_raw(nats_url, [(f"s-{i}", _png(i).to_json_bytes()) for i in range(n)])
    seen: set[str] = set()
    first_batch = asyncio.Event()
    release = asyncio.Event()

    async def slow(events: list[PngCreated]) -> None:
        seen.update(e.file_path for e in events)
        first_batch.set()
        await release.wait()

    options = ConsumerOptions(batch_size=size, max_ack_pending=4 * size, ack_wait_s=30)
    first = await run_broker(
        lambda b: subscribe_event_batch(b, PngCreated, slow, durable="t_stop", options=options)
    )
    await asyncio.wait_for(first_batch.wait(), 20)
    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0.2)
    release.set()
    await stopping

    done = asyncio.Event()

    async def fast(events: list[PngCreated]) -> None:
        seen.update(e.file_path for e in events)
        if len(seen) == n:
            done.set()

    second = await run_broker(
        lambda b: subscribe_event_batch(b, PngCreated, fast, durable="t_stop", options=options)
    )
    # ack_wait is 30 s: only a nak (or an ack) brings the read-ahead back this soon.
    await asyncio.wait_for(done.wait(), 15)
    info = await _settled(second, "t_stop")
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
