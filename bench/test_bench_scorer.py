"""Scorer figures: gRPC Score / ScoreBatch against in-process ONNX Runtime on the same data.

A 300-tree x 68-feature LightGBM model (real artifact, ONNX contract), and a family release
of the same size (issue 16): four entry members like that model (the pooled one with the
cluster code as a 69th input) and LightGBM quantile members (risk 3 alphas, rr 2, offset 3;
one booster per alpha) over the same 68 features. The scorer runs as its own process
(``python -m hindsight.scorer``, NATS unset, loaded from its cache file); clients use
separate channels on loopback. Prints figures and ratios; asserts no timings.
Run with `make bench` (or `pytest -m bench bench/test_bench_scorer.py -s`).
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
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "services" / "scorer" / "tests"))
from family_testkit import FamilyRelease, build_family  # noqa: E402
from scorer_testkit import Artifact, build_artifact  # noqa: E402

from hindsight.scoring.v1 import scoring_pb2, scoring_pb2_grpc  # noqa: E402

pytestmark = pytest.mark.bench

N_FEATURES = 68
N_TREES = 300
SEQUENTIAL_CALLS = 2000
CONCURRENT_CLIENTS = 8
CONCURRENT_CALLS = 500  # per client
BATCH_ROWS = 1000
BATCHES = 20
FAMILY_TREES = 300
PREDICT_CALLS = 2000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    root = tmp_path_factory.mktemp("bench-artifacts")
    return build_artifact(
        root,
        version="20260101T000000Z-bench0",
        n_features=N_FEATURES,
        n_trees=N_TREES,
        num_leaves=31,
        rows=20_000,
    )


@pytest.fixture(scope="module")
def family(artifact: Artifact) -> FamilyRelease:
    """A release next to the model, in the same artifact root, with members of its size."""
    return build_family(
        artifact.directory.parents[2],
        version="v1_0_0",
        features=artifact.feature_names,
        n_trees=FAMILY_TREES,
        num_leaves=31,
        rows=2_000,  # enough for full 31-leaf trees; the build is most of this bench's time
        lightgbm_quantiles=True,
    )


@pytest.fixture(scope="module")
def scorer(
    artifact: Artifact, family: FamilyRelease, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    data_dir = tmp_path_factory.mktemp("bench-data")
    cache = data_dir / "scorer" / "deployments.json"
    cache.parent.mkdir(parents=True)
    deployments = [artifact.deployment(), family.deployment()]
    cache.write_text(json.dumps({"deployments": deployments}))
    grpc_port, http_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HINDSIGHT_")}
    env |= {
        "HINDSIGHT_ARTIFACT_ROOT": str(artifact.directory.parents[2]),
        "HINDSIGHT_DATA_DIR": str(data_dir),
        "HINDSIGHT_SCORER_GRPC_PORT": str(grpc_port),
        "HINDSIGHT_SCORER_HTTP_PORT": str(http_port),
        "HINDSIGHT_SCORER_REGISTRY_URL": f"http://127.0.0.1:{_free_port()}",
        "HINDSIGHT_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "hindsight.scorer"], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("scorer did not become ready")
        yield grpc_port
    finally:
        proc.terminate()
        proc.wait(10)


def _rows(artifact: Artifact, n: int, seed: int = 1) -> np.ndarray:
    return (
        np.random.default_rng(seed).normal(size=(n, len(artifact.feature_names))).astype(np.float32)
    )


def _request(artifact: Artifact, row: np.ndarray, i: int, explain: bool = False) -> object:
    return scoring_pb2.ScoreRequest(
        signal_id=f"bench-{i}",
        side="buy",
        features=dict(zip(artifact.feature_names, row.tolist(), strict=True)),
        explain=explain,
    )


def _session(artifact: Artifact) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(artifact.directory / "model.onnx"), sess_options=options)


def _time_each(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def test_bench_score_latency(artifact: Artifact, scorer: int) -> None:
    session = _session(artifact)
    row = _rows(artifact, 1)
    for _ in range(200):
        session.run(["probabilities"], {"input": row})
    ort_p50, ort_p99 = _pct(
        _time_each(lambda: session.run(["probabilities"], {"input": row}), 5000)
    )

    channel = grpc.insecure_channel(f"127.0.0.1:{scorer}")
    client = scoring_pb2_grpc.ScoringStub(channel)
    request = _request(artifact, row[0], 0)
    explained = _request(artifact, row[0], 0, explain=True)
    for _ in range(300):
        client.Score(request)
        client.Score(explained)
    seq = _time_each(lambda: client.Score(request), SEQUENTIAL_CALLS)
    exp = _time_each(lambda: client.Score(explained), SEQUENTIAL_CALLS // 2)
    answer = client.Score(request)
    server_ms = [client.Score(request).prediction_time_ms for _ in range(500)]
    channel.close()
    assert (
        abs(answer.p_success - float(session.run(["probabilities"], {"input": row})[0][0, 1]))
        < 1e-6
    )

    s50, s99 = _pct(seq)
    e50, e99 = _pct(exp)
    print(
        f"\nmodel: {N_TREES} trees x {N_FEATURES} features (31 leaves)"
        f"\nin-process ORT run, 1 row:          p50 {ort_p50:.3f} ms  p99 {ort_p99:.3f} ms"
        f"\ngRPC Score sequential (explain off): p50 {s50:.3f} ms  p99 {s99:.3f} ms  "
        f"ratio p50 {s50 / ort_p50:.0f}x  p99 {s99 / ort_p99:.0f}x"
        f"\n  server-side prediction_time_ms:    p50 {statistics.median(server_ms):.3f} ms"
        f"\ngRPC Score sequential (explain on):  p50 {e50:.3f} ms  p99 {e99:.3f} ms  "
        f"(+{e50 - s50:.3f} ms at p50 for TreeSHAP)"
    )


def test_bench_score_concurrent(artifact: Artifact, scorer: int) -> None:
    rows = _rows(artifact, CONCURRENT_CLIENTS)

    async def one_client(i: int) -> list[float]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{scorer}") as channel:
            client = scoring_pb2_grpc.ScoringStub(channel)
            request = _request(artifact, rows[i], i)
            for _ in range(50):
                await client.Score(request)
            samples = []
            for _ in range(CONCURRENT_CALLS):
                start = time.perf_counter()
                await client.Score(request)
                samples.append(time.perf_counter() - start)
            return samples

    async def run() -> tuple[list[float], float]:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_client(i) for i in range(CONCURRENT_CLIENTS)))
        return [s for r in results for s in r], time.perf_counter() - start

    samples, wall = asyncio.run(run())
    p50, p99 = _pct(samples)
    print(
        f"\ngRPC Score, {CONCURRENT_CLIENTS} concurrent clients (separate channels, one client "
        f"process): p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
        f"throughput {len(samples) / wall:,.0f} calls/s"
    )


def _packed_batch(artifact: Artifact, matrix: np.ndarray) -> scoring_pb2.ScoreBatchRequest:
    """The packed form: names once, each row's values in that order (here: model order)."""
    return scoring_pb2.ScoreBatchRequest(
        feature_names=artifact.feature_names,
        requests=[
            scoring_pb2.ScoreRequest(signal_id=f"bench-{i}", side="buy", feature_values=row)
            for i, row in enumerate(matrix.tolist())
        ],
    )


def test_bench_score_batch(artifact: Artifact, scorer: int) -> None:
    session = _session(artifact)
    matrix = _rows(artifact, BATCH_ROWS, seed=2)
    ort_s = statistics.median(
        _time_each(lambda: session.run(["probabilities"], {"input": matrix}), 20)
    )
    expected = session.run(["probabilities"], {"input": matrix})[0][:, 1]
    forms = {
        "map   ": scoring_pb2.ScoreBatchRequest(
            requests=[_request(artifact, row, i) for i, row in enumerate(matrix)]
        ),
        "packed": _packed_batch(artifact, matrix),
    }
    channel = grpc.insecure_channel(
        f"127.0.0.1:{scorer}", options=[("grpc.max_receive_message_length", 64 << 20)]
    )
    client = scoring_pb2_grpc.ScoringStub(channel)
    answers = {}
    for _ in range(3):
        for form, batch in forms.items():
            answers[form] = client.ScoreBatch(batch)
    # Interleaved rounds, so that both forms see the same machine load.
    samples: dict[str, list[float]] = {form: [] for form in forms}
    for _ in range(BATCHES):
        for form, batch in forms.items():
            samples[form] += _time_each(lambda b=batch: client.ScoreBatch(b), 1)
    server_ms = {
        form: statistics.median(
            [client.ScoreBatch(batch).responses[0].prediction_time_ms for _ in range(5)]
        )
        for form, batch in forms.items()
    }
    channel.close()
    for answer in answers.values():
        got = np.array([r.p_success for r in answer.responses])
        assert float(np.max(np.abs(got - expected))) < 1e-6
    assert [r.p_success for r in answers["packed"].responses] == [
        r.p_success for r in answers["map   "].responses
    ]
    lines = [
        f"\nScoreBatch {BATCH_ROWS} rows x {N_FEATURES} features, median of {BATCHES} calls; "
        f"in-process ORT same matrix: {BATCH_ROWS / ort_s:,.0f} rows/s ({ort_s * 1000:.2f} ms)"
    ]
    grpc_s = {form: statistics.median(samples[form]) for form in forms}
    for form in forms:
        lines.append(
            f"  {form} form: {BATCH_ROWS / grpc_s[form]:,.0f} rows/s "
            f"({grpc_s[form] * 1000:.1f} ms per call, server part {server_ms[form]:.1f} ms); "
            f"ratio to ORT {grpc_s[form] / ort_s:.1f}x"
        )
    lines.append(f"  packed / map throughput: {grpc_s['map   '] / grpc_s['packed']:.2f}x")
    print("\n".join(lines))


def _predict_request(
    release: FamilyRelease, row: np.ndarray, i: int, cluster: str
) -> scoring_pb2.PredictRequest:
    return scoring_pb2.PredictRequest(
        signal_id=f"bench-{i}",
        side="buy",
        features=dict(zip(release.card.features, row.tolist(), strict=True)),
        liquidity_cluster=cluster,
    )


def test_bench_predict_latency(artifact: Artifact, family: FamilyRelease, scorer: int) -> None:
    """Predict (every head) next to Score and to bare ORT for the same heads, one run."""
    row = _rows(artifact, 1, seed=3)
    features = dict(zip(family.card.features, row[0].tolist(), strict=True))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sessions = {
        m.name: ort.InferenceSession(str(family.directory / m.file), sess_options=options)
        for m in family.card.members
    }
    # The members one Predict with cluster H runs: its routed entry member and the 3 heads.
    heads = [family.card.head_member(h, "H") for h in ("entry", "risk", "rr", "offset")]
    inputs = [np.ascontiguousarray(row[:, : len(m.features)]) for m in heads]

    def bare() -> None:
        for member, x in zip(heads, inputs, strict=True):
            sessions[member.name].run([member.output], {"input": x})

    for _ in range(200):
        bare()
    ort_p50, ort_p99 = _pct(_time_each(bare, 5000))
    model_session = _session(artifact)
    score_ort_p50, _ = _pct(
        _time_each(lambda: model_session.run(["probabilities"], {"input": row}), 5000)
    )

    channel = grpc.insecure_channel(f"127.0.0.1:{scorer}")
    client = scoring_pb2_grpc.ScoringStub(channel)
    score_request = _request(artifact, row[0], 0)
    predict_request = _predict_request(family, row[0], 0, "H")
    for _ in range(300):
        client.Score(score_request)
        client.Predict(predict_request)
    # Interleaved, so that both RPCs see the same machine load.
    score_s: list[float] = []
    predict_s: list[float] = []
    for _ in range(PREDICT_CALLS // 100):
        score_s += _time_each(lambda: client.Score(score_request), 100)
        predict_s += _time_each(lambda: client.Predict(predict_request), 100)
    answer = client.Predict(predict_request)
    server_ms = [client.Predict(predict_request).prediction_time_ms for _ in range(500)]
    score_server_ms = [client.Score(score_request).prediction_time_ms for _ in range(500)]
    matrix = _rows(artifact, BATCH_ROWS, seed=4)
    batch = scoring_pb2.PredictBatchRequest(
        requests=[
            _predict_request(family, r, i, ("H", "M", "L", "")[i % 4]) for i, r in enumerate(matrix)
        ]
    )
    client.PredictBatch(batch)
    batch_s = statistics.median(_time_each(lambda: client.PredictBatch(batch), 10))
    channel.close()
    for member in heads:  # every head equals its member file's output
        want = family.member_output(member.name, features, "H")
        got = answer.heads[member.head]
        served = (
            want[1]
            if member.kind == "binary"
            else want[member.alphas.index(float(member.served_alpha or 0.0))]
        )
        assert abs(got.value - float(served)) < 1e-6

    s50, s99 = _pct(score_s)
    p50, p99 = _pct(predict_s)
    trees = FAMILY_TREES * (1 + sum(len(m.alphas) for m in heads[1:]))
    print(
        f"\nfamily: entry {FAMILY_TREES} trees x {N_FEATURES} features; quantile heads one "
        f"{FAMILY_TREES}-tree booster per alpha ({trees} trees per Predict)"
        f"\nin-process ORT, the 4 members of one Predict, 1 row: p50 {ort_p50:.3f} ms  "
        f"p99 {ort_p99:.3f} ms  (the Score model alone: p50 {score_ort_p50:.3f} ms)"
        f"\ngRPC Score sequential:   p50 {s50:.3f} ms  p99 {s99:.3f} ms  "
        f"(server {statistics.median(score_server_ms):.3f} ms)"
        f"\ngRPC Predict sequential: p50 {p50:.3f} ms  p99 {p99:.3f} ms  "
        f"(server {statistics.median(server_ms):.3f} ms)  "
        f"Predict / Score p50 {p50 / s50:.2f}x  p99 {p99 / s99:.2f}x (aim <= 1.5x)"
        f"\n  Predict over bare ORT of its members: p50 +{p50 - ort_p50:.3f} ms"
        f"\ngRPC PredictBatch {BATCH_ROWS} rows (clusters H/M/L/unknown mixed): "
        f"{BATCH_ROWS / batch_s:,.0f} rows/s ({batch_s * 1000:.1f} ms per call)"
    )
