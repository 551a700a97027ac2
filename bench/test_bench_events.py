"""Event plumbing figures: validation cost and JetStream publish latency.

Prints figures and ratios against the in-process baseline; asserts no timings.
Run with `make bench`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import nats
import pytest

from hindsight.common.broker import create_broker, ensure_streams, publish_event
from hindsight.common.events import PngCreated, SignalFeatures, parse_event
from hindsight.common.settings import BaseServiceSettings

pytestmark = pytest.mark.bench

SIGNAL = json.dumps(
    {
        "schema_version": 1,
        "occurred_at": "2026-11-21T10:00:00Z",
        "source": "rule-executor",
        "signal_id": "sig-1",
        "symbol": "EURUSD",
        "timeframe": "1h",
        "side": "buy",
        "ts": "2026-11-21T10:00:00Z",
        "features": {f"f{i}": i * 0.5 for i in range(40)},
        "feature_schema_version": 3,
    }
).encode()


def _per_op_us(fn: Callable[[], object], n: int) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def test_bench_event_validation() -> None:
    baseline = _per_op_us(lambda: json.loads(SIGNAL), 5000)
    validated = _per_op_us(lambda: parse_event("signal.features", SIGNAL), 5000)
    assert isinstance(parse_event("signal.features", SIGNAL), SignalFeatures)
    print(
        f"\nsignal.features (40 features): json.loads {baseline:.1f} µs, "
        f"parse_event {validated:.1f} µs, ratio {validated / baseline:.1f}x"
    )


async def test_bench_jetstream_publish(
    nats_url: str, nats_client: nats.aio.client.Client, jetstream_reset: None
) -> None:
    js = nats_client.jetstream()
    settings = BaseServiceSettings(nats_url=nats_url)
    broker = create_broker(settings, client_name="bench")
    await broker.connect()
    await ensure_streams(broker, settings)
    n = 500
    raw, ours = [], []
    for i in range(n):
        body = json.dumps({"file_path": f"/raw/{i}.png"}).encode()
        start = time.perf_counter()
        await js.publish("png.created", body, headers={"Nats-Msg-Id": f"raw-{i}"})
        raw.append(time.perf_counter() - start)
    for i in range(n):
        event = PngCreated.create(source="bench", file_path=f"/charts/{i}.png", run_id="bench")
        start = time.perf_counter()
        await publish_event(broker, event)
        ours.append(time.perf_counter() - start)
    await broker.stop()
    raw_ms, ours_ms = statistics.median(raw) * 1e3, statistics.median(ours) * 1e3
    p99 = sorted(ours)[int(n * 0.99)] * 1e3
    print(
        f"\nJetStream publish+ack, {n} msgs: raw nats-py {raw_ms:.3f} ms median, "
        f"publish_event {ours_ms:.3f} ms median (p99 {p99:.3f} ms), "
        f"ratio {ours_ms / raw_ms:.2f}x"
    )
