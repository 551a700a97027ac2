"""Gateway figures: overhead over a direct scorer call, breaker-open answers, throughput,
ScoreBatch rows/s (map and packed forms) direct and through the gateway, and Predict (the
model family's four heads) next to Score, direct and through the gateway.

A real scorer process (36 features x 100 trees, and a family release on the same features
with members of 100 trees, loaded from its cache file, NATS unset) and two gateway
processes: one in front of that scorer, one in front of a dead port whose breaker is open.
Clients use separate channels on loopback. Prints figures; asserts no timings.
Run with `pytest -m bench bench/test_bench_gateway.py -s`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "services" / "scorer" / "tests"))
from family_testkit import FamilyRelease, build_family  # noqa: E402
from scorer_testkit import Artifact, build_artifact  # noqa: E402

from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.bench

N_FEATURES = 36
N_TREES = 100
ROUNDS = 10
CALLS_PER_ROUND = 200
CLIENTS = 16
CALLS_PER_CLIENT = 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HINDSIGHT_")}
    return env | {"HINDSIGHT_LOG_LEVEL": "WARNING"}


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited")
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, module: str, env: dict[str, str], http_port: int) -> None:
        proc = subprocess.Popen([sys.executable, "-m", module], env=env, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        _wait_ready(f"http://127.0.0.1:{http_port}/readyz", proc)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    root = tmp_path_factory.mktemp("gw-bench-artifacts")
    return build_artifact(
        root, version="20260101T000000Z-gwbnch", n_features=N_FEATURES, n_trees=N_TREES
    )


@pytest.fixture(scope="module")
def ports(
    artifact: Artifact, family: FamilyRelease, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, int]]:
    data_dir = tmp_path_factory.mktemp("gw-bench-data")
    cache = data_dir / "scorer" / "deployments.json"
    cache.parent.mkdir(parents=True)
    deployments = [artifact.deployment(), family.deployment()]
    cache.write_text(json.dumps({"deployments": deployments}))
    p = {
        name: _free_port()
        for name in ("scorer", "scorer_http", "gw", "gw_http", "open", "open_http")
    }
    procs = Processes()
    try:
        procs.start(
            "hindsight.scorer",
            _base_env()
            | {
                "HINDSIGHT_ARTIFACT_ROOT": str(artifact.directory.parents[2]),
                "HINDSIGHT_DATA_DIR": str(data_dir),
                "HINDSIGHT_SCORER_GRPC_PORT": str(p["scorer"]),
                "HINDSIGHT_SCORER_HTTP_PORT": str(p["scorer_http"]),
                "HINDSIGHT_SCORER_REGISTRY_URL": f"http://127.0.0.1:{_free_port()}",
            },
            p["scorer_http"],
        )
        for name, target, open_s in (
            ("gw", f"127.0.0.1:{p['scorer']}", "5"),
            ("open", f"127.0.0.1:{_free_port()}", "3600"),  # nothing listens there
        ):
            procs.start(
                "hindsight.gateway",
                _base_env()
                | {
                    "HINDSIGHT_GATEWAY_GRPC_PORT": str(p[name]),
                    "HINDSIGHT_GATEWAY_HTTP_PORT": str(p[name + "_http"]),
                    "HINDSIGHT_GATEWAY_SCORERS": target,
                    "HINDSIGHT_GATEWAY_BREAKER_OPEN_S": open_s,
                },
                p[name + "_http"],
            )
        yield p
    finally:
        procs.stop()


def _request(artifact: Artifact, i: int = 0) -> scoring_pb2.ScoreRequest:
    row = np.random.default_rng(i).normal(size=len(artifact.feature_names))
    return scoring_pb2.ScoreRequest(
        signal_id=f"bench-{i}",
        side="buy",
        features=dict(zip(artifact.feature_names, row.tolist(), strict=True)),
    )


def _time_each(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def test_bench_gateway(artifact: Artifact, ports: dict[str, int]) -> None:
    request = _request(artifact)
    channels = {name: grpc.insecure_channel(f"127.0.0.1:{ports[name]}") for name in ports}
    stubs = {name: scoring_pb2_grpc.ScoringStub(ch) for name, ch in channels.items()}
    direct, gateway = stubs["scorer"], stubs["gw"]
    for _ in range(300):
        direct.Score(request, timeout=1.0)
        gateway.Score(request, timeout=1.0)
    answer = gateway.Score(request, timeout=1.0)
    assert not answer.fallback
    assert answer.p_success == direct.Score(request, timeout=1.0).p_success

    # Overhead: the same request, interleaved rounds, direct vs through the gateway.
    direct_s: list[float] = []
    gateway_s: list[float] = []
    for _ in range(ROUNDS):
        direct_s += _time_each(lambda: direct.Score(request, timeout=1.0), CALLS_PER_ROUND)
        gateway_s += _time_each(lambda: gateway.Score(request, timeout=1.0), CALLS_PER_ROUND)
    d50, d99 = _pct(direct_s)
    g50, g99 = _pct(gateway_s)
    gw_server_ms = [gateway.Score(request, timeout=1.0).prediction_time_ms for _ in range(500)]

    # Breaker open: a gateway whose only scorer is a dead port.
    broken = stubs["open"]
    for _ in range(20):
        broken.Score(request, timeout=1.0)
    reasons = {broken.Score(request, timeout=1.0).fallback_reason for _ in range(10)}
    open_s = _time_each(lambda: broken.Score(request, timeout=1.0), ROUNDS * CALLS_PER_ROUND)
    o50, o99 = _pct(open_s)
    open_server_ms = [broken.Score(request, timeout=1.0).prediction_time_ms for _ in range(500)]
    for channel in channels.values():
        channel.close()

    # Throughput: 16 concurrent clients through the gateway (one client process).
    async def one_client(i: int) -> list[float]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['gw']}") as channel:
            stub = scoring_pb2_grpc.ScoringStub(channel)
            one = _request(artifact, i)
            for _ in range(20):
                await stub.Score(one, timeout=1.0)
            samples = []
            for _ in range(CALLS_PER_CLIENT):
                start = time.perf_counter()
                answer = await stub.Score(one, timeout=1.0)
                samples.append(time.perf_counter() - start)
                if answer.fallback:
                    fallbacks[answer.fallback_reason] = fallbacks.get(answer.fallback_reason, 0) + 1
            return samples

    fallbacks: dict[str, int] = {}

    async def run() -> tuple[list[float], float]:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_client(i) for i in range(CLIENTS)))
        return [s for r in results for s in r], time.perf_counter() - start

    samples, wall = asyncio.run(run())
    c50, c99 = _pct(samples)
    metrics = httpx.get(f"http://127.0.0.1:{ports['gw_http']}/metrics").text
    upstream = [
        line
        for line in metrics.splitlines()
        if line.startswith(
            ("hindsight_gateway_upstream_calls_total{", "hindsight_gateway_breaker_transitions")
        )
    ]
    print(
        f"\nmodel: {N_TREES} trees x {N_FEATURES} features; {ROUNDS * CALLS_PER_ROUND} calls each"
        f"\ndirect scorer Score:       p50 {d50:.3f} ms  p99 {d99:.3f} ms"
        f"\ngateway Score:             p50 {g50:.3f} ms  p99 {g99:.3f} ms"
        f"\ngateway overhead:          p50 {g50 - d50:+.3f} ms  p99 {g99 - d99:+.3f} ms"
        f"\n  gateway server time (prediction_time_ms): "
        f"p50 {statistics.median(gw_server_ms):.3f} ms"
        f"\nbreaker open ({sorted(reasons)}): p50 {o50:.3f} ms  p99 {o99:.3f} ms"
        f"  (server time p50 {statistics.median(open_server_ms):.3f} ms"
        f"  p99 {np.percentile(open_server_ms, 99):.3f} ms)"
        f"\n{CLIENTS} concurrent clients via gateway: p50 {c50:.3f} ms  p99 {c99:.3f} ms"
        f"  throughput {len(samples) / wall:,.0f} calls/s  fallbacks {fallbacks}"
        + "\n"
        + "\n".join(upstream)
    )


BATCH_ROWS = 1000
BATCH_CALLS = 15


def _batches(artifact: Artifact) -> dict[str, scoring_pb2.ScoreBatchRequest]:
    """The same 1,000 rows as a map batch and as a packed batch."""
    names = artifact.feature_names
    matrix = np.random.default_rng(3).normal(size=(BATCH_ROWS, len(names)))
    return {
        "map   ": scoring_pb2.ScoreBatchRequest(
            requests=[
                scoring_pb2.ScoreRequest(
                    signal_id=f"gb-{i}", side="buy", features=dict(zip(names, row, strict=True))
                )
                for i, row in enumerate(matrix.tolist())
            ]
        ),
        "packed": scoring_pb2.ScoreBatchRequest(
            feature_names=names,
            requests=[
                scoring_pb2.ScoreRequest(signal_id=f"gb-{i}", side="buy", feature_values=row)
                for i, row in enumerate(matrix.tolist())
            ],
        ),
    }


def test_bench_gateway_batch(artifact: Artifact, ports: dict[str, int]) -> None:
    batches = _batches(artifact)
    options = [("grpc.max_receive_message_length", 64 << 20)]
    channels = [
        grpc.insecure_channel(f"127.0.0.1:{ports[n]}", options=options) for n in ("scorer", "gw")
    ]
    direct, gateway = (scoring_pb2_grpc.ScoringStub(ch) for ch in channels)
    answers = {}
    for _ in range(3):
        for form, batch in batches.items():
            direct.ScoreBatch(batch, timeout=5.0)
            answers[form] = gateway.ScoreBatch(batch, timeout=5.0)
    for answer in answers.values():
        assert not any(r.fallback for r in answer.responses)
    expected = [r.p_success for r in direct.ScoreBatch(batches["map   "], timeout=5.0).responses]
    assert [r.p_success for r in answers["packed"].responses] == expected
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(BATCH_CALLS):  # interleaved: every figure sees the same machine load
        for form, batch in batches.items():
            for via, stub in (("direct ", direct), ("gateway", gateway)):
                start = time.perf_counter()
                stub.ScoreBatch(batch, timeout=5.0)
                samples.setdefault((form, via), []).append(time.perf_counter() - start)
    for channel in channels:
        channel.close()
    median = {key: statistics.median(s) for key, s in samples.items()}
    lines = [f"\nScoreBatch {BATCH_ROWS} rows x {N_FEATURES} features, median of {BATCH_CALLS}:"]
    for (form, via), s in median.items():
        lines.append(
            f"  {form} {via}: {BATCH_ROWS / s:,.0f} rows/s ({s * 1000:.1f} ms per call)"
            + (
                f"; gateway / direct {s / median[(form, 'direct ')]:.2f}x"
                if via == "gateway"
                else ""
            )
        )
    lines.append(
        "  packed / map via the gateway: "
        f"{median[('map   ', 'gateway')] / median[('packed', 'gateway')]:.2f}x throughput"
    )
    print("\n".join(lines))


# --- Predict (model family) through the gateway, next to Score -------------------------


@pytest.fixture(scope="module")
def family(artifact: Artifact) -> FamilyRelease:
    """A family release on the same features as the Score model, LightGBM members of the
    same size (entry experts and pooled; quantile boosters per alpha), under the same
    artifact root: the scorer of ``ports`` serves both."""
    return build_family(
        artifact.directory.parents[2],
        features=artifact.feature_names,
        n_trees=N_TREES,
        lightgbm_quantiles=True,
    )


def test_bench_gateway_predict(
    artifact: Artifact, family: FamilyRelease, ports: dict[str, int]
) -> None:
    score = _request(artifact)
    predict = scoring_pb2.PredictRequest(
        signal_id=score.signal_id, side="buy", features=score.features, liquidity_cluster="H"
    )
    channels = [grpc.insecure_channel(f"127.0.0.1:{ports[n]}") for n in ("scorer", "gw")]
    direct, gateway = (scoring_pb2_grpc.ScoringStub(ch) for ch in channels)
    for _ in range(300):
        for stub in (direct, gateway):
            stub.Score(score, timeout=1.0)
            stub.Predict(predict, timeout=1.0)
    answer = gateway.Predict(predict, timeout=1.0)
    assert not answer.fallback and answer.family_version == family.version
    assert answer == _same_time(direct.Predict(predict, timeout=1.0), answer)
    calls: dict[str, Callable[[], object]] = {
        "direct  Score  ": lambda: direct.Score(score, timeout=1.0),
        "direct  Predict": lambda: direct.Predict(predict, timeout=1.0),
        "gateway Score  ": lambda: gateway.Score(score, timeout=1.0),
        "gateway Predict": lambda: gateway.Predict(predict, timeout=1.0),
    }
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(ROUNDS):  # interleaved: every figure sees the same machine load
        for name, call in calls.items():
            samples[name] += _time_each(call, CALLS_PER_ROUND)
    server_ms = {
        "Score  ": [gateway.Score(score, timeout=1.0).prediction_time_ms for _ in range(500)],
        "Predict": [gateway.Predict(predict, timeout=1.0).prediction_time_ms for _ in range(500)],
    }
    for channel in channels:
        channel.close()
    pct = {name: _pct(s) for name, s in samples.items()}
    lines = [
        f"\nPredict (4 heads, {len(family.card.members)} members of {N_TREES} trees) next to "
        f"Score ({N_TREES} trees), {N_FEATURES} features, real scorer, "
        f"{ROUNDS * CALLS_PER_ROUND} calls each:"
    ]
    lines += [f"  {name}: p50 {p50:.3f} ms  p99 {p99:.3f} ms" for name, (p50, p99) in pct.items()]
    for rpc in ("Score  ", "Predict"):
        (d50, d99), (g50, g99) = pct[f"direct  {rpc}"], pct[f"gateway {rpc}"]
        lines.append(f"  gateway overhead {rpc}: p50 {g50 - d50:+.3f} ms  p99 {g99 - d99:+.3f} ms")
    for via in ("direct ", "gateway"):
        (s50, s99), (p50, p99) = pct[f"{via} Score  "], pct[f"{via} Predict"]
        lines.append(f"  {via} Predict / Score: p50 {p50 / s50:.2f}x  p99 {p99 / s99:.2f}x")
    lines += [
        f"  gateway server time {rpc}: p50 {statistics.median(ms):.3f} ms  "
        f"p99 {np.percentile(ms, 99):.3f} ms"
        for rpc, ms in server_ms.items()
    ]
    print("\n".join(lines))


def _same_time(
    direct: scoring_pb2.PredictResponse, gateway: scoring_pb2.PredictResponse
) -> scoring_pb2.PredictResponse:
    """``direct`` with the gateway's own ``prediction_time_ms`` (all else passes through)."""
    direct.prediction_time_ms = gateway.prediction_time_ms
    return direct
