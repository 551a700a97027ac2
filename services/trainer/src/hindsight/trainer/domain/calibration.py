"""Probability calibration: Platt (sigmoid on the logit) or isotonic on a fixed grid.

Both are plain functions of the booster's probability ``p`` that the ONNX graph
reproduces node for node: sigmoid is ``1 / (1 + exp(-(a * logit(clip(p)) + b)))``;
isotonic is linear interpolation between ``GRID_POINTS`` equally spaced knots on [0, 1]
(an isotonic fit evaluated at the knots), so its slope is bounded by
``(GRID_POINTS - 1) * max jump`` and the float32 graph agrees with the float64 model.

Isotonic is only considered with ``ISOTONIC_MIN_ROWS`` calibration rows or more: on a
small block its steps reach 0 and 1 and the model would announce certainties. Whatever
the method, the output is clipped to ``[P_MIN, 1 - P_MIN]``: no calibrated probability
is ever exactly 0 or 1 (the ONNX graph clips the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from hindsight.common.artifacts import P_MIN
from hindsight.trainer.domain.jsonsafe import JsonObject
from hindsight.trainer.domain.metrics import brier_score, log_loss

__all__ = [
    "EPS",
    "GRID_POINTS",
    "ISOTONIC_MIN_ROWS",
    "P_MIN",
    "Calibrator",
    "choose_calibrator",
    "fit_isotonic",
    "fit_sigmoid",
]

FloatArray = npt.NDArray[np.float64]
GRID_POINTS = 101
EPS = 1e-6  # clip of the raw p before its logit (sigmoid)
ISOTONIC_MIN_ROWS = 1000  # fewer calibration rows: sigmoid only


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, EPS, 1.0 - EPS)
    return np.asarray(np.log(q / (1.0 - q)), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Calibrator:
    """A fitted calibration map ``p_raw -> p_calibrated``."""

    method: Literal["sigmoid", "isotonic"]
    a: float = 1.0
    b: float = 0.0
    grid_y: tuple[float, ...] = ()
    scores: JsonObject = field(default_factory=dict)

    def __call__(self, p: FloatArray) -> FloatArray:
        """Calibrated probabilities (float64)."""
        p = np.asarray(p, dtype=np.float64)
        if self.method == "sigmoid":
            with np.errstate(over="ignore"):  # exp overflow → inf → 0: the right limit
                out = 1.0 / (1.0 + np.exp(-(self.a * _logit(p) + self.b)))
        else:
            y = np.asarray(self.grid_y, dtype=np.float64)
            steps = GRID_POINTS - 1
            pos = np.clip(p, 0.0, 1.0) * steps
            idx = np.clip(np.floor(pos), 0, steps - 1).astype(np.int64)
            frac = pos - idx
            out = y[idx] + frac * (y[idx + 1] - y[idx])
        return np.asarray(np.clip(out, P_MIN, 1.0 - P_MIN), dtype=np.float64)

    def to_dict(self) -> JsonObject:
        """JSON-ready parameters (what metrics.json records under ``calibration``)."""
        out: JsonObject = {
            "method": self.method,
            "selection": self.scores,
            "output_clip": [P_MIN, 1.0 - P_MIN],
        }
        if self.method == "sigmoid":
            out.update(a=self.a, b=self.b, eps=EPS, formula="1/(1+exp(-(a*logit(p)+b)))")
        else:
            out.update(
                grid_x=[i / (GRID_POINTS - 1) for i in range(GRID_POINTS)],
                grid_y=list(self.grid_y),
                formula="linear interpolation on a fixed grid",
            )
        return out


def fit_sigmoid(p: FloatArray, y: npt.NDArray[np.integer[Any]]) -> Calibrator:
    """Platt scaling on the logit of ``p`` (nearly unregularised logistic regression)."""
    model = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000)
    model.fit(_logit(p).reshape(-1, 1), y)
    return Calibrator("sigmoid", a=float(model.coef_[0, 0]), b=float(model.intercept_[0]))


def fit_isotonic(p: FloatArray, y: npt.NDArray[np.integer[Any]]) -> Calibrator:
    """Isotonic regression, evaluated on the grid's knots."""
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
    iso.fit(np.asarray(p, dtype=np.float64), y.astype(np.float64))
    grid = np.linspace(0.0, 1.0, GRID_POINTS)
    return Calibrator("isotonic", grid_y=tuple(float(v) for v in iso.predict(grid)))


def choose_calibrator(p: FloatArray, y: npt.NDArray[np.integer[Any]]) -> Calibrator:
    """Sigmoid below ``ISOTONIC_MIN_ROWS`` rows; from there, the better of the two.

    Choosing on the data a method was fit on would always favour the more flexible
    isotonic, so the choice is made by a two-fold split in time of the validation block
    (fit on one half, score the other, both ways). The lower log-loss wins (it punishes
    the over-confident 0/1 steps isotonic can produce, which a Brier score barely sees);
    Brier breaks ties. The winner is then refit on the whole block.
    """
    if len(p) < ISOTONIC_MIN_ROWS:
        chosen = fit_sigmoid(p, y)
        note = f"{len(p)} calibration rows < {ISOTONIC_MIN_ROWS}: sigmoid, isotonic not tried"
        return Calibrator(chosen.method, chosen.a, chosen.b, (), {"rule": note})
    half = len(p) // 2
    halves = [(slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))]
    scores: dict[str, dict[str, float]] = {}
    for name, fit in (("sigmoid", fit_sigmoid), ("isotonic", fit_isotonic)):
        brier, ll = [], []
        for fit_part, eval_part in halves:
            if len(set(y[fit_part].tolist())) < 2:
                continue
            cal = fit(p[fit_part], y[fit_part])
            q = cal(p[eval_part])
            brier.append(brier_score(y[eval_part], q))
            ll.append(log_loss(y[eval_part], q))
        scores[name] = {
            "brier": float(np.mean(brier)) if brier else float("inf"),
            "log_loss": float(np.mean(ll)) if ll else float("inf"),
        }
    best = min(scores, key=lambda m: (scores[m]["log_loss"], scores[m]["brier"]))
    chosen = (fit_sigmoid if best == "sigmoid" else fit_isotonic)(p, y)
    finite = {
        m: {k: (v if np.isfinite(v) else None) for k, v in s.items()} for m, s in scores.items()
    }
    return Calibrator(
        chosen.method,
        chosen.a,
        chosen.b,
        chosen.grid_y,
        {
            "rule": f"{len(p)} calibration rows >= {ISOTONIC_MIN_ROWS}: lower CV log-loss",
            "cv_on_validation": finite,
        },
    )
