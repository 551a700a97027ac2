"""The production model lookup over real HTTP (a small registry stand-in on a real port)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from fastapi import FastAPI

from hindsight.common.http import HttpServer
from hindsight.devstack.ports import free_port
from hindsight.devstack.synthetic import generate
from hindsight.trainer.artifact_store import write_artifact
from hindsight.trainer.domain.onnx_export import onnx_predict
from hindsight.trainer.domain.quality import QualityConfig, check_quality
from hindsight.trainer.domain.rows import TrainingRow
from hindsight.trainer.domain.splits import SplitConfig
from hindsight.trainer.domain.training import TrainingParams, train_model
from hindsight.trainer.production import RegistryProduction

pytestmark = pytest.mark.integration
PARAMS = TrainingParams(num_boost_round=20, bootstrap_resamples=10, split=SplitConfig(cv_folds=0))


def _rows() -> list[TrainingRow]:
    return [
        TrainingRow(
            signal_id=s.signal_id,
            symbol=s.symbol,
            timeframe=s.timeframe,
            side=s.side,
            ts=s.ts,
            features=s.features,
            feature_schema_version=1,
            closed_at=o.closed_at,
            result=o.result,
            realised_r=o.realised_r,
            seq=i,
            occurred_at=s.occurred_at,
        )
        for i, (s, o) in enumerate(generate(1500, seed=2, n_features=6))
    ]


@pytest_asyncio.fixture
async def registry(tmp_path: Path) -> AsyncIterator[tuple[str, Path, list[str], Any]]:
    report, used = check_quality(_rows(), QualityConfig(min_rows=100))
    result = train_model(used, report.feature_names, PARAMS)
    uri, sha, _ = write_artifact(
        tmp_path,
        model_name="m",
        version="v1",
        run_id="r1",
        created_at=datetime.now(UTC),
        feature_schema_version=1,
        result=result,
        extra={},
    )
    app = FastAPI()

    @app.get("/v1/deployments")
    async def deployments() -> list[dict[str, Any]]:
        return [
            {
                "model_name": "m",
                "version": "v1",
                "stage": "production",
                "artifact_uri": uri,
                "sha256": sha,
            }
        ]

    server = HttpServer(app, host="127.0.0.1", port=free_port())
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}", tmp_path, report.feature_names, result
    finally:
        await server.stop()


async def test_production_model_is_loaded_when_features_match(registry) -> None:
    url, root, names, result = registry
    baseline = await RegistryProduction(url, root).load("m", names)
    assert baseline.predict is not None and baseline.version == "v1"
    x = np.random.default_rng(0).normal(size=(50, len(names)))
    assert np.allclose(baseline.predict(x), onnx_predict(result.onnx_bytes, x))


async def test_other_features_or_no_deployment_give_no_predictor(registry) -> None:
    url, root, names, _ = registry
    other = await RegistryProduction(url, root).load("m", [*names, "extra"])
    assert other.predict is None and "other features" in (other.note or "")
    none = await RegistryProduction(url, root).load("unknown", names)
    assert none.predict is None and none.note is None


async def test_unreachable_registry_is_a_note(tmp_path: Path) -> None:
    baseline = await RegistryProduction(f"http://127.0.0.1:{free_port()}", tmp_path).load(
        "m", ["a"]
    )
    assert baseline.predict is None and "unreachable" in (baseline.note or "")
