"""Fixtures of the scorer tests (helpers in ``scorer_testkit``)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the test kit importable

from scorer_testkit import Artifact, build_artifact, closed_port  # noqa: E402

from hindsight.scorer.app import ScorerApp, build_app, build_settings  # noqa: E402


@pytest.fixture
def artifact_root(tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-artifacts")


@pytest.fixture(scope="session")
def model_v1(shared_root: Path) -> Artifact:
    """A 6-feature model whose f05 may be NaN."""
    return build_artifact(shared_root, version="20260101T000000Z-aaaaaa", nan_allowed=("f05",))


AppFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def scorer_factory(tmp_path: Path) -> AsyncIterator[AppFactory]:
    """Builds and starts scorer apps on free ports; stops them after the test."""
    started: list[ScorerApp] = []

    async def make(
        *, artifact_root: Path, nats_url: str | None = None, **overrides: Any
    ) -> ScorerApp:
        settings = build_settings(
            nats_url=nats_url,
            artifact_root=artifact_root,
            data_dir=overrides.pop("data_dir", tmp_path / "data"),
            grpc_port=0,
            http_port=0,
            registry_url=overrides.pop("registry_url", f"http://127.0.0.1:{closed_port()}"),
            registry_timeout_s=0.5,
            nats_grace_s=overrides.pop("nats_grace_s", 2.0),
            **overrides,
        )
        app = build_app(settings)
        await app.start()
        started.append(app)
        await asyncio.wait_for(app.bootstrapped.wait(), 10)
        return app

    yield make
    for app in reversed(started):
        await app.stop()


@pytest_asyncio.fixture
async def channel_factory() -> AsyncIterator[Callable[[int], grpc.aio.Channel]]:
    """Separate grpc.aio client channels, closed after the test."""
    channels: list[grpc.aio.Channel] = []

    def make(port: int) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return channel

    yield make
    for channel in channels:
        await channel.close()
