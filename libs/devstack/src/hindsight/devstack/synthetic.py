"""A seeded synthetic market with a KNOWN learnable edge, and a fast JetStream publisher.

:func:`generate` returns ``(SignalFeatures, SignalOutcome)`` pairs. The probability that a
trade wins is ``sigmoid(TRUE_INTERCEPT + sum(TRUE_WEIGHTS[k] * feature_k) + interaction)``
over a few informative features (:data:`INFORMATIVE`); every other feature is noise. A
good model reaches a held-out ROC-AUC of about 0.75 (the true function's own AUC is a
little higher). A few feature values are missing (``None``) at ``missing_rate``.
Prices follow a per-symbol random walk; the exit price is consistent with the result
under a 0.5 % threshold, so a consumer deriving results from prices agrees.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from hindsight.common.events import SignalFeatures, SignalOutcome

__all__ = [
    "DEFAULT_SYMBOLS",
    "INFORMATIVE",
    "TRUE_INTERCEPT",
    "TRUE_WEIGHTS",
    "feature_name",
    "generate",
    "publish",
    "true_probability",
]

DEFAULT_SYMBOLS: tuple[str, ...] = ("EURUSD", "GBPUSD", "USDJPY", "BTCUSD", "XAUUSD")
TRUE_WEIGHTS: tuple[float, ...] = (0.9, -0.7, 0.55, 0.4)
TRUE_INTERCEPT = -0.1
INFORMATIVE: tuple[int, ...] = (0, 1, 2, 3)
_BASE_PRICE = {"EURUSD": 1.08, "GBPUSD": 1.27, "USDJPY": 151.0, "BTCUSD": 42000.0, "XAUUSD": 2030.0}
_TIMEFRAME = "1h"
_REWARD_R = 1.5
_MOVE = 0.01  # a win or a loss moves the price by 1 %, twice the 0.5 % threshold


def feature_name(index: int) -> str:
    """Name of feature ``index``: ``f00``, ``f01``, ..."""
    return f"f{index:02d}"


def true_probability(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """P(win) of the generating process for a ``[n, n_features]`` matrix (NaN read as 0)."""
    z = np.nan_to_num(x, nan=0.0)
    logit = TRUE_INTERCEPT + sum(
        w * z[:, k] for k, w in zip(INFORMATIVE, TRUE_WEIGHTS, strict=True)
    )
    logit = logit + 0.5 * np.tanh(z[:, 0] * z[:, 2])
    return np.asarray(1.0 / (1.0 + np.exp(-logit)))


def generate(
    n: int,
    *,
    seed: int,
    n_features: int = 20,
    symbols: Sequence[str] = DEFAULT_SYMBOLS,
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    missing_rate: float = 0.01,
    derive_share: float = 0.0,
    feature_schema_version: int = 1,
    source: str = "synthetic",
) -> list[tuple[SignalFeatures, SignalOutcome]]:
    """``n`` signal/outcome pairs, deterministic for ``seed``.

    Signals rotate over ``symbols``, one per hour per symbol (increasing ``ts`` per
    symbol). ``derive_share`` of the outcomes omit ``result`` (the consumer derives it
    from the prices).
    """
    if n_features < len(INFORMATIVE):
        raise ValueError(f"n_features must be >= {len(INFORMATIVE)}")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features))
    missing = rng.random(size=(n, n_features)) < missing_rate
    x_obs = np.where(missing, np.nan, x)
    # The outcome depends on the true values; a missing value hides information.
    wins = rng.random(n) < true_probability(x)
    breakeven = (~wins) & (rng.random(n) < 0.05)
    sides = np.where(rng.random(n) < 0.5, "buy", "sell")
    hold_hours = rng.integers(1, 12, size=n)
    drifts = rng.normal(scale=0.002, size=n)
    omit = rng.random(n) < derive_share
    prices = {s: _BASE_PRICE.get(s, 100.0) for s in symbols}
    pairs: list[tuple[SignalFeatures, SignalOutcome]] = []
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        ts = start + timedelta(hours=i // len(symbols), minutes=i % len(symbols))
        prices[symbol] *= math.exp(float(drifts[i]))
        entry = round(prices[symbol], 6)
        side = str(sides[i])
        result = "win" if wins[i] else "breakeven" if breakeven[i] else "loss"
        sign = 1.0 if side == "buy" else -1.0
        move = {"win": _MOVE, "loss": -_MOVE, "breakeven": 0.0}[result] * sign
        exit_price = round(entry * (1.0 + move), 6)
        r = {"win": _REWARD_R, "loss": -1.0, "breakeven": 0.0}[result]
        signal_id = f"syn-{seed}-{i:07d}"
        features = {
            feature_name(j): (None if math.isnan(v) else round(float(v), 6))
            for j, v in enumerate(x_obs[i])
        }
        closed_at = ts + timedelta(hours=int(hold_hours[i]))
        signal = SignalFeatures.create(
            source=source,
            occurred_at=ts,
            signal_id=signal_id,
            symbol=symbol,
            timeframe=_TIMEFRAME,
            side=side,
            ts=ts,
            features=features,
            feature_schema_version=feature_schema_version,
            entry_price=entry,
            run_id=f"synthetic-{seed}",
            trade_id=signal_id,
        )
        outcome = SignalOutcome.create(
            source=source,
            occurred_at=closed_at,
            signal_id=signal_id,
            closed_at=closed_at,
            result=None if omit[i] else result,
            entry_price=entry,
            exit_price=exit_price,
            realised_r=r,
            pnl=round((exit_price - entry) * sign, 6),
        )
        pairs.append((signal, outcome))
    return pairs


async def publish(
    nats_url: str,
    pairs: Sequence[tuple[SignalFeatures, SignalOutcome]],
    *,
    concurrency: int = 512,
    ensure_streams: bool = True,
    timeout: float = 10.0,
) -> int:
    """Publish every signal, then every outcome, to JetStream; returns messages stored.

    Publishes are pipelined ``concurrency`` at a time on one connection, with
    ``Nats-Msg-Id`` = :meth:`Event.message_id` like every producer. ``ensure_streams``
    creates the Hindsight streams first when missing. Duplicates (already stored ids)
    are not counted.
    """
    import nats

    from hindsight.common.broker import STREAM

    if ensure_streams:
        await _ensure_streams(nats_url)
    client = await nats.connect(nats_url, connect_timeout=5)
    try:
        js = client.jetstream(timeout=timeout)
        events = [s for s, _ in pairs] + [o for _, o in pairs]
        acked = 0
        for lo in range(0, len(events), concurrency):
            chunk = events[lo : lo + concurrency]
            acks = await asyncio.gather(
                *(
                    js.publish(
                        e.subject,
                        e.to_json_bytes(),
                        stream=STREAM,
                        headers={
                            "Nats-Msg-Id": e.message_id(),
                            "content-type": "application/json",
                        },
                    )
                    for e in chunk
                )
            )
            acked += sum(1 for ack in acks if not ack.duplicate)
        return acked
    finally:
        await client.close()


async def _ensure_streams(nats_url: str) -> None:
    from hindsight.common.broker import create_broker
    from hindsight.common.broker import ensure_streams as ensure
    from hindsight.common.settings import BaseServiceSettings

    broker = create_broker(BaseServiceSettings(nats_url=nats_url), client_name="synthetic")
    await broker.connect()
    try:
        await ensure(broker, BaseServiceSettings(nats_url=nats_url))
    finally:
        await broker.stop()
