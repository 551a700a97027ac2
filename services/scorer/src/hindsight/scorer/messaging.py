"""NATS: background connection, ``model.deployed`` replay + live, ``prediction.logged``.

Every replica replays the whole ``model.deployed`` history with an ordered ephemeral
consumer and follows it live (:mod:`hindsight.common.stream_replay` says why not a durable); the
history is folded before anything loads. The connection is made in the background and
retried forever: the scorer starts and scores with NATS down.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from itertools import repeat
from typing import NamedTuple

from faststream.nats import NatsBroker
from nats.aio.msg import Msg

from hindsight.common.background import BackgroundPublisher, is_connected
from hindsight.common.errors import HindsightError
from hindsight.common.events import MODEL_DEPLOYED, ModelDeployed, PredictionLogged, parse_event
from hindsight.common.settings import BaseServiceSettings
from hindsight.common.stream_replay import ReplayFeed
from hindsight.scorer.domain.deployments import Deployment
from hindsight.scorer.metrics import PREDICTIONS_LOGGED, PREDICTIONS_UNLOGGED

__all__ = ["DeploymentFeed", "PredictionLog", "is_connected", "to_deployment"]

logger = logging.getLogger(__name__)

SOURCE = "scorer"


def to_deployment(event: ModelDeployed) -> Deployment:
    """The domain view of a ``model.deployed`` event."""
    return Deployment(
        model_name=event.model_name,
        version=event.version,
        stage=event.stage,
        artifact_uri=event.artifact_uri,
        sha256=event.sha256.lower(),
    )


class DeploymentFeed(ReplayFeed):
    """Replays ``model.deployed`` (folded by the caller), then applies each live one."""

    def __init__(
        self,
        broker: NatsBroker,
        settings: BaseServiceSettings,
        *,
        on_replayed: Callable[[list[Deployment]], Awaitable[None]],
        on_deployed: Callable[[Deployment], Awaitable[None]],
    ) -> None:
        async def replayed(history: list[Msg]) -> None:
            deployments: list[Deployment] = []
            for msg in history:
                await self.slice.checkpoint()  # a long history must not starve Score calls
                deployment = _parse(msg)
                if deployment is not None:
                    deployments.append(deployment)
            await on_replayed(deployments)

        async def live(msg: Msg) -> None:
            deployment = _parse(msg)
            if deployment is not None:
                await on_deployed(deployment)

        super().__init__(
            broker,
            settings,
            [MODEL_DEPLOYED],
            on_replayed=replayed,
            on_message=live,
            name="scorer-nats",
        )


def _parse(msg: Msg) -> Deployment | None:
    try:
        event = parse_event(MODEL_DEPLOYED, msg.data)
    except HindsightError as exc:
        logger.warning("ignoring an invalid model.deployed: %s", exc)
        return None
    assert isinstance(event, ModelDeployed)
    return to_deployment(event)


class _Prediction(NamedTuple):
    # A NamedTuple, not a frozen dataclass: built per scored row, and cheaper to build.
    signal_id: str
    model_version: str
    p_success: float
    latency_ms: float
    model_name: str | None = None


class PredictionLog(BackgroundPublisher[_Prediction]):
    """Publishes ``prediction.logged`` for the scorer's own answers, off the request path.

    Calls marked by the gateway are not recorded (the gateway logs those).
    """

    def __init__(
        self, broker: NatsBroker, *, capacity: int, max_in_flight: int, linger_s: float = 0.0
    ) -> None:
        super().__init__(
            broker,
            _to_event,
            capacity=capacity,
            max_in_flight=max_in_flight,
            published=PREDICTIONS_LOGGED,
            unpublished=PREDICTIONS_UNLOGGED,
            name="scorer-prediction-log",
            linger_s=linger_s,
        )

    def record(
        self,
        signal_id: str,
        model_version: str,
        p_success: float,
        latency_ms: float,
        *,
        model_name: str | None = None,
    ) -> None:
        """Queue one prediction for logging; O(1), never awaits.

        ``model_name``: the family of a ``Predict`` answer; None for ``Score`` (as before).
        """
        self.put(_Prediction(signal_id, model_version, p_success, latency_ms, model_name))

    def record_many(
        self,
        signal_ids: Sequence[str],
        model_versions: Sequence[str],
        p_success: Sequence[float],
        latency_ms: float,
        *,
        model_name: str | None = None,
    ) -> None:
        """Queue a batch's predictions (same ``latency_ms`` each) in one call; never awaits."""
        for prediction in map(
            _Prediction,
            signal_ids,
            model_versions,
            p_success,
            repeat(latency_ms),
            repeat(model_name),
        ):
            self.put(prediction)


def _to_event(p: _Prediction) -> PredictionLogged:
    return PredictionLogged.create(
        source=SOURCE,
        prediction_id=str(uuid.uuid4()),
        signal_id=p.signal_id,
        model_version=p.model_version,
        p_success=p.p_success,
        fallback=False,
        latency_ms=p.latency_ms,
        model_name=p.model_name,
    )
