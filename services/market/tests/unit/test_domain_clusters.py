"""Liquidity clusters: terciles of dollar volume, ties, fewer than 3 symbols, bad values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hindsight.market.domain.clusters import (
    CLUSTER_RULE_VERSION,
    liquidity_clusters,
    rolling_dollar_volume,
)

pytestmark = pytest.mark.unit


def test_three_symbols_one_per_cluster() -> None:
    assert liquidity_clusters({"GOOG": 5e9, "BTCUSD": 2e10, "EURUSD": 1e6}) == {
        "BTCUSD": "H",
        "GOOG": "M",
        "EURUSD": "L",
    }


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (4, "HHML"),
        (5, "HHMML"),
        (6, "HHMMLL"),
        (7, "HHHMMLL"),
        (9, "HHHMMMLLL"),
    ],
)
def test_remainders_go_to_the_higher_clusters(n: int, expected: str) -> None:
    volumes = {f"S{i}": float(100 - i) for i in range(n)}  # S0 largest
    clusters = liquidity_clusters(volumes)
    assert "".join(clusters[f"S{i}"] for i in range(n)) == expected


def test_ties_share_the_higher_cluster() -> None:
    # Ranks 0, 1, 1, 3, 4, 5 of 6: the tie at rank 1 is H for both, whatever the names.
    clusters = liquidity_clusters({"A": 9.0, "Z": 5.0, "B": 5.0, "C": 4.0, "D": 3.0, "E": 1.0})
    assert clusters == {"A": "H", "Z": "H", "B": "H", "C": "M", "D": "L", "E": "L"}
    everyone_equal = liquidity_clusters(dict.fromkeys("ABCDE", 7.0))
    assert set(everyone_equal.values()) == {"H"}


def test_fewer_than_three_symbols_are_all_middle() -> None:
    assert liquidity_clusters({}) == {}
    assert liquidity_clusters({"BTCUSD": 1e10}) == {"BTCUSD": "M"}
    assert liquidity_clusters({"BTCUSD": 1e10, "GOOG": 1.0}) == {"BTCUSD": "M", "GOOG": "M"}


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_dollar_volume_names_the_symbol(bad: float) -> None:
    with pytest.raises(ValueError, match="'GOOG'"):
        liquidity_clusters({"BTCUSD": 1.0, "GOOG": bad, "EURUSD": 2.0})


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.floats(0, 1e12), min_size=3))
def test_clusters_are_ordered_and_balanced(volumes: dict[str, float]) -> None:
    clusters = liquidity_clusters(volumes)
    assert set(clusters) == set(volumes)
    level = {"H": 0, "M": 1, "L": 2}
    for s in volumes:
        for t in volumes:
            if volumes[s] > volumes[t]:
                assert level[clusters[s]] <= level[clusters[t]]
            if volumes[s] == volumes[t]:
                assert clusters[s] == clusters[t]
    # Without ties, at most ceil(n / 3) symbols per cluster and every cluster is used.
    if len(set(volumes.values())) == len(volumes):
        n = len(volumes)
        counts = [list(clusters.values()).count(c) for c in "HML"]
        assert all(1 <= k <= math.ceil(n / 3) for k in counts)


def test_rolling_dollar_volume_is_the_mean_of_the_last_window() -> None:
    close = np.array([1.0, 2.0, 3.0, 4.0])
    volume = np.array([10.0, 10.0, 10.0, 20.0])
    assert rolling_dollar_volume(close, volume, window=2) == (30.0 + 80.0) / 2
    assert rolling_dollar_volume(close, volume, window=30) == (10 + 20 + 30 + 80) / 4
    with pytest.raises(ValueError, match="close: no bars"):
        rolling_dollar_volume(np.array([]), np.array([]))
    assert CLUSTER_RULE_VERSION
