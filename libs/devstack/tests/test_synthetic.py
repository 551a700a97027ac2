"""The synthetic market: deterministic for a seed, with a learnable edge."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from hindsight.devstack.synthetic import feature_name, generate, true_probability

pytestmark = pytest.mark.unit


def matrix(pairs, n_features: int = 20) -> tuple[np.ndarray, np.ndarray]:
    x = np.array(
        [
            [
                np.nan if s.features[feature_name(j)] is None else s.features[feature_name(j)]
                for j in range(n_features)
            ]
            for s, _ in pairs
        ]
    )
    y = np.array([1 if o.result == "win" else 0 for _, o in pairs])
    return x, y


def test_same_seed_same_events_other_seed_other_events() -> None:
    a = [(s.to_json_bytes(), o.to_json_bytes()) for s, o in generate(200, seed=1)]
    b = [(s.to_json_bytes(), o.to_json_bytes()) for s, o in generate(200, seed=1)]
    c = [(s.to_json_bytes(), o.to_json_bytes()) for s, o in generate(200, seed=2)]
    assert a == b and a != c


def test_shape_of_the_market() -> None:
    pairs = generate(2000, seed=3, symbols=("AAA", "BBB"))
    last: dict[str, object] = {}
    for signal, outcome in pairs:
        assert signal.source == "synthetic" and signal.signal_id == outcome.signal_id
        assert last.get(signal.symbol) is None or last[signal.symbol] < signal.ts
        last[signal.symbol] = signal.ts
        assert outcome.closed_at > signal.ts and signal.entry_price and signal.entry_price > 0
    x, _ = matrix(pairs)
    assert 0.002 < np.mean(np.isnan(x)) < 0.03  # a few missing values
    assert len({s.message_id() for s, _ in pairs} | {o.message_id() for _, o in pairs}) == 4000


def test_the_edge_is_learnable() -> None:
    x, y = matrix(generate(8000, seed=4))
    x = np.nan_to_num(x)
    truth = roc_auc_score(y, true_probability(x))
    model = LogisticRegression(max_iter=1000).fit(x[:6000], y[:6000])
    held_out = roc_auc_score(y[6000:], model.predict_proba(x[6000:])[:, 1])
    assert 0.70 <= truth <= 0.85
    assert held_out > 0.65


def test_derived_outcomes_agree_with_the_prices() -> None:
    pairs = generate(500, seed=5, derive_share=1.0)
    assert all(o.result is None for _, o in pairs)
    twin = generate(500, seed=5)
    for (signal, outcome), (_, given) in zip(pairs, twin, strict=True):
        entry, exit_ = outcome.entry_price, outcome.exit_price
        assert entry is not None and exit_ is not None
        up, down = exit_ > entry * 1.005, exit_ < entry * 0.995
        won = up if signal.side == "buy" else down
        lost = down if signal.side == "buy" else up
        assert given.result == ("win" if won else "loss" if lost else "breakeven")
