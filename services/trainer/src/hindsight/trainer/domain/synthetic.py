"""A synthetic family frame with a known structure (tests, benches, demos).

Rows are signals 5 minutes apart over six symbols; each symbol sits in one liquidity
cluster (``S0``, ``S1``: H; ``S2``, ``S3``: M; ``S4``, ``S5``: L). Features ``f0`` ..
``f{n_features-1}`` are independent standard normals. Targets:

* ``y_entry`` ~ Bernoulli(sigmoid(sum_j w_j f_j)) over ``f0`` .. ``f5``, weights 0.7 with
  signs per cluster: with ``clusters_differ`` H is (+ + + + + +), M (+ - + - + -) and
  L (- - - + + +), so every feature's effect depends on the cluster and a pooled model must
  spend its splits on the interaction; otherwise every cluster uses H's weights.
* ``sl_katr`` ~ LogNormal(0.2 + 0.3 f3, 0.4), ``rr_target`` ~ LogNormal(0.5 + 0.3 f4, 0.5),
  ``offset_katr`` ~ Normal(0.3 f5 - 0.05, 0.3): :func:`true_quantile` gives their exact
  conditional quantiles.
* ``realised_r``: +1 when ``y_entry`` is 1, else -1.

The result is a dict of numpy columns (``pandas.DataFrame(frame)`` makes it a DataFrame);
:func:`~hindsight.trainer.domain.family.train_family` takes either.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from hindsight.common.family import Head

__all__ = ["CLUSTER_OF_SYMBOL", "SYMBOLS", "make_family_frame", "true_quantile"]

SYMBOLS = ("S0", "S1", "S2", "S3", "S4", "S5")
CLUSTER_OF_SYMBOL = {"S0": "H", "S1": "H", "S2": "M", "S3": "M", "S4": "L", "S5": "L"}
_STEP_US = 5 * 60 * 1_000_000
_HORIZON_STEPS = 12
_START_US = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)

# (location intercept, feature, slope, scale) of each quantile head's target.
_LOGNORMAL: dict[str, tuple[float, str, float, float]] = {
    "risk": (0.2, "f3", 0.3, 0.4),
    "rr": (0.5, "f4", 0.3, 0.5),
}
_OFFSET = (-0.05, "f5", 0.3, 0.3)
# The entry logit's weights on f0, f1, f2 per cluster: each cluster flips other signs, so
# every feature's effect depends on the cluster (averaged over clusters it nearly vanishes).
_ENTRY_WEIGHTS: dict[str, tuple[float, ...]] = {
    "H": (0.7, 0.7, 0.7, 0.7, 0.7, 0.7),
    "M": (0.7, -0.7, 0.7, -0.7, 0.7, -0.7),
    "L": (-0.7, -0.7, -0.7, 0.7, 0.7, 0.7),
}
_SHARED = _ENTRY_WEIGHTS["H"]


def true_quantile(
    columns: dict[str, npt.NDArray[Any]], head: Head, alpha: float
) -> npt.NDArray[np.float64]:
    """The exact conditional ``alpha`` quantile of ``head``'s target for each row."""
    z = float(norm.ppf(alpha))
    if head in _LOGNORMAL:
        mu0, feature, slope, sigma = _LOGNORMAL[head]
        return np.asarray(np.exp(mu0 + slope * columns[feature] + sigma * z), dtype=np.float64)
    if head == "offset":
        mu0, feature, slope, sigma = _OFFSET
        return np.asarray(mu0 + slope * columns[feature] + sigma * z, dtype=np.float64)
    raise ValueError(f"head {head} has no quantile target")


def make_family_frame(
    n: int, *, clusters_differ: bool, seed: int, n_features: int = 6
) -> dict[str, npt.NDArray[Any]]:
    """``n`` rows in time order (see the module docstring for the structure)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    if n_features < 6:
        raise ValueError("n_features must be >= 6 (f0..f5 carry the structure)")
    rng = np.random.default_rng(seed)
    ts = _START_US + np.arange(n, dtype=np.int64) * _STEP_US
    symbol = rng.choice(np.array(SYMBOLS, dtype=object), size=n)
    cluster = np.array([CLUSTER_OF_SYMBOL[s] for s in symbol], dtype=object)
    f = {f"f{j}": rng.standard_normal(n) for j in range(n_features)}
    weights = _ENTRY_WEIGHTS if clusters_differ else dict.fromkeys(_ENTRY_WEIGHTS, _SHARED)
    logit = np.zeros(n)
    for name, w in weights.items():
        rows = cluster == name
        logit[rows] = sum(wj * f[f"f{j}"][rows] for j, wj in enumerate(w))
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    columns: dict[str, npt.NDArray[Any]] = {
        "signal_id": np.array([f"sig-{i:07d}" for i in range(n)], dtype=object),
        "ts": ts.astype("datetime64[us]"),
        "closed_at": (ts + _HORIZON_STEPS * _STEP_US).astype("datetime64[us]"),
        "symbol": symbol,
        "timeframe": np.full(n, "5m", dtype=object),
        "side": rng.choice(np.array(["buy", "sell"], dtype=object), size=n),
        "liquidity_cluster": cluster,
        **f,
        "y_entry": y,
        "realised_r": np.where(y == 1, 1.0, -1.0),
    }
    for head, target in (("risk", "sl_katr"), ("rr", "rr_target")):
        mu0, feature, slope, sigma = _LOGNORMAL[head]
        columns[target] = np.exp(mu0 + slope * f[feature] + sigma * rng.standard_normal(n))
    mu0, feature, slope, sigma = _OFFSET
    columns["offset_katr"] = mu0 + slope * f[feature] + sigma * rng.standard_normal(n)
    return columns
