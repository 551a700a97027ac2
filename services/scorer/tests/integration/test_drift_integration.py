"""Drift end to end: the real scorer app, real gRPC calls, PSI read from /metrics."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scorer_testkit import build_artifact, request, stub, training_like

from hindsight.scorer.domain.deployments import Deployment
from hindsight.scoring.v1 import scoring_pb2

pytestmark = pytest.mark.integration

THRESHOLD = 0.2
SHIFTED = "f03"


def samples(text: str, name: str, version: str) -> dict[str, float]:
    """Values of ``name`` for ``version``, keyed by feature (or "" for per-version gauges)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("version") == version:
                out[sample.labels.get("feature", "")] = sample.value
    return out


async def wait_for_rows(http: httpx.AsyncClient, version: str, rows: int) -> str:
    """/metrics once the drift window of ``version`` holds ``rows`` binned and exported rows."""
    deadline = time.monotonic() + 15
    while True:
        text = (await http.get("/metrics")).text
        if samples(text, "hindsight_scorer_drift_window_rows", version).get("") == rows:
            return text
        assert time.monotonic() < deadline, "drift window never reached the expected rows"
        await asyncio.sleep(0.05)


async def score_rows(client: Any, names: list[str], x: np.ndarray) -> None:
    """Half by single Score calls, half by ScoreBatch calls of 100."""
    half = len(x) // 2
    for i, row in enumerate(x[:half]):
        await client.Score(
            request(dict(zip(names, map(float, row), strict=True)), signal_id=f"s{i}")
        )
    for start in range(half, len(x), 100):
        batch = [
            request(dict(zip(names, map(float, row), strict=True)), signal_id=f"b{start + j}")
            for j, row in enumerate(x[start : start + 100])
        ]
        await client.ScoreBatch(scoring_pb2.ScoreBatchRequest(requests=batch))


async def test_shifted_feature_raises_psi_and_max_psi(  # type: ignore[no-untyped-def]
    scorer_factory, channel_factory, artifact_root: Path
) -> None:
    artifact = build_artifact(artifact_root, version="20260301T000000Z-d21f7a", n_trees=10)
    app = await scorer_factory(
        artifact_root=artifact_root,
        drift_window=1000,
        drift_min_rows=500,
        drift_flush_s=0.05,
        drift_export_s=0.05,
    )
    await app.reconciler.apply(Deployment(**artifact.deployment()))
    client = stub(channel_factory(app.grpc.port))
    version = artifact.version
    names = artifact.feature_names
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.http.port}") as http:
        # The series exist from the load, NaN until enough rows were scored.
        text = await wait_for_rows(http, version, 0)
        assert np.isnan(samples(text, "hindsight_scorer_drift_max_psi", version)[""])

        await score_rows(client, names, training_like(1000, len(names), seed=21))
        text = await wait_for_rows(http, version, 1000)
        psi = samples(text, "hindsight_scorer_feature_psi", version)
        assert set(psi) == set(names)
        assert max(psi.values()) < THRESHOLD, psi
        assert samples(text, "hindsight_scorer_drift_max_psi", version)[""] < THRESHOLD
        over = samples(text, "hindsight_scorer_drift_features_over_threshold", version)
        assert over[""] == 0

        shifted = training_like(1000, len(names), seed=22)
        shifted[:, names.index(SHIFTED)] += 1.5  # +1.5 std of the training data
        await score_rows(client, names, shifted)
        # The window (1000) now holds only shifted rows; wait for their export.
        deadline = time.monotonic() + 15
        while True:
            text = (await http.get("/metrics")).text
            psi = samples(text, "hindsight_scorer_feature_psi", version)
            if psi[SHIFTED] > THRESHOLD:
                break
            assert time.monotonic() < deadline, psi
            await asyncio.sleep(0.05)
        text = await wait_for_rows(http, version, 1000)
        psi = samples(text, "hindsight_scorer_feature_psi", version)
        assert psi[SHIFTED] > THRESHOLD
        assert all(v < THRESHOLD for k, v in psi.items() if k != SHIFTED), psi
        max_psi = samples(text, "hindsight_scorer_drift_max_psi", version)[""]
        assert max_psi > THRESHOLD and max_psi == pytest.approx(psi[SHIFTED])
        over = samples(text, "hindsight_scorer_drift_features_over_threshold", version)
        assert over[""] == 1
