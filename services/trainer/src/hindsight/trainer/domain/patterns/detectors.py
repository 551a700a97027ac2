"""Rule-based weak labels over a 64-bar window: flag, wedge, blow-off, wick exhaustion, none.

All thresholds are in ATR units, ``A`` = the window's median true range (``bars.atr``).
``C``, ``H``, ``L``, ``O`` are the window's closes, highs, lows, opens; index -1 is the
window's last bar (its end). The rules run in the order below; the first that fires labels
the window (a blow-off also looks like a pole, so it is tested before the flag).

1. ``blow_off`` — a parabolic run into the end. Over the last 8 bars the net move
   ``|C[-1] - C[-9]| >= 5 A``; its last 4 bars carry at least 60 % of it (acceleration); the
   last bar's true range ``>= 2 A``; and the last close lies within 1 A of the window's
   extreme in the move's direction. ``pole_katr`` = the 8-bar move in ATR.
2. ``wick_exhaustion`` — one of the last 2 bars rejects a new extreme: its wick against the
   prior move (upper wick after an advance, lower after a decline) is ``>= 2 A`` and
   ``>= 2 ×`` its body, the bar sets the window's extreme, and the 20 bars before it moved
   ``>= 3 A`` toward that extreme (previous close vs their lowest low / highest high).
   ``pole_katr`` = 0.
3. ``flag`` — a pole, then a tight counter-drift to the end. The pole: ``k`` in 3..10 bars
   whose net close-to-close move is ``>= 4 A`` and ``>= 0.8 A`` per bar; the flag: the last
   ``m`` in 5..20 bars after it, whose high-low range is ``<= 50 %`` of the pole, which
   retrace ``<= 50 %`` of the pole and do not extend it by more than 1 A. The best (pole,
   flag) split wins. ``pole_katr`` = the pole in ATR.
4. ``wedge`` — converging, same-direction trend lines. The last 30 bars in 6 chunks of 5;
   least-squares lines through the chunks' highs and lows. Both slopes have the same sign
   and are ``>= 0.15 A`` per chunk; the fitted width at the first chunk is ``>= 3 A`` and at
   the last ``<= 60 %`` of it; the chunks' mean absolute residual is ``<= 25 %`` of the
   first width. ``pole_katr`` = 0.
5. ``none`` — no rule fired. ``pole_katr`` = 0.

Confidence. Each condition has a ratio ``r`` = value / threshold (for an upper bound:
threshold / value), capped at 10; a rule's score is its smallest ratio, and it fires when the
score is ``>= 1``. A fired rule's confidence is ``0.5 + 0.5 × min(1, score - 1)``; a window
labelled ``none`` has ``1 - 0.5 × max score`` of the rules (scores clipped to [0, 1]) — the
closer some rule came to firing, the less sure ``none`` is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hindsight.trainer.domain.patterns.bars import WINDOW, Bars, FloatArray, atr, true_range

__all__ = ["CLASSES", "NONE", "Detection", "detect", "detect_all"]

CLASSES = ("flag", "wedge", "blow_off", "wick_exhaustion", "none")
"""The class map: index = the class id the network and the ONNX graph use."""
NONE = CLASSES.index("none")

_RATIO_CAP = 10.0


@dataclass(frozen=True, slots=True)
class Detection:
    """A window's weak label."""

    pattern: str
    confidence: float
    pole_katr: float

    @property
    def label(self) -> int:
        """The class id in ``CLASSES``."""
        return CLASSES.index(self.pattern)


@dataclass(frozen=True, slots=True)
class _Score:
    score: float
    pole_katr: float = 0.0


def _at_least(value: float, threshold: float) -> float:
    return min(_RATIO_CAP, max(0.0, value) / threshold)


def _at_most(value: float, threshold: float) -> float:
    return _RATIO_CAP if value <= threshold / _RATIO_CAP else min(_RATIO_CAP, threshold / value)


def _blow_off(w: Bars, a: float) -> _Score:
    c = w.close
    move = float(c[-1] - c[-9])
    d = 1.0 if move >= 0 else -1.0
    late = d * float(c[-1] - c[-5])
    extreme = float(w.high.max() - c[-1]) if d > 0 else float(c[-1] - w.low.min())
    ratios = [
        _at_least(abs(move), 5 * a),
        _at_least(late, 0.6 * abs(move)) if move != 0 else 0.0,
        _at_least(float(true_range(w)[-1]), 2 * a),
        _at_most(extreme, a),
    ]
    return _Score(min(ratios), abs(move) / a)


def _wick_exhaustion(w: Bars, a: float) -> _Score:
    best = 0.0
    for j in (WINDOW - 1, WINDOW - 2):
        body = abs(float(w.close[j] - w.open[j]))
        upper = float(w.high[j] - max(w.open[j], w.close[j]))
        lower = float(min(w.open[j], w.close[j]) - w.low[j])
        before = slice(j - 20, j)
        prev = float(w.close[j - 1])
        up_ratios = [
            _at_least(upper, 2 * a),
            _at_least(upper, 2 * body) if body > 0 else _RATIO_CAP,
            _RATIO_CAP if w.high[j] >= w.high.max() else float(w.high[j] / w.high.max()) ** 50,
            _at_least(prev - float(w.low[before].min()), 3 * a),
        ]
        down_ratios = [
            _at_least(lower, 2 * a),
            _at_least(lower, 2 * body) if body > 0 else _RATIO_CAP,
            _RATIO_CAP if w.low[j] <= w.low.min() else float(w.low.min() / w.low[j]) ** 50,
            _at_least(float(w.high[before].max()) - prev, 3 * a),
        ]
        best = max(best, min(up_ratios), min(down_ratios))
    return _Score(best)


def _flag(w: Bars, a: float) -> _Score:
    c, n = w.close, WINDOW
    best = _Score(0.0)
    for m in range(5, 21):
        p = n - 1 - m
        flag_hi, flag_lo = float(w.high[p + 1 :].max()), float(w.low[p + 1 :].min())
        for k in range(3, 11):
            pole = float(c[p] - c[p - k])
            size = abs(pole)
            if size == 0:
                continue
            if pole > 0:
                retrace, extend = float(c[p]) - flag_lo, flag_hi - float(c[p])
            else:
                retrace, extend = flag_hi - float(c[p]), float(c[p]) - flag_lo
            ratios = [
                _at_least(size, 4 * a),
                _at_least(size / k, 0.8 * a),
                _at_most(flag_hi - flag_lo, 0.5 * size),
                _at_most(retrace, 0.5 * size),
                _at_most(extend, a),
            ]
            score = min(ratios)
            if score > best.score:
                best = _Score(score, size / a)
    return best


def _line(y: FloatArray) -> tuple[float, float, FloatArray]:
    x = np.arange(len(y), dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    fitted = intercept + slope * x
    return float(slope), float(intercept), y - fitted


def _wedge(w: Bars, a: float) -> _Score:
    chunks = 6
    highs = w.high[-30:].reshape(chunks, 5).max(axis=1)
    lows = w.low[-30:].reshape(chunks, 5).min(axis=1)
    s_hi, i_hi, r_hi = _line(highs)
    s_lo, i_lo, r_lo = _line(lows)
    start = i_hi - i_lo
    end = start + (s_hi - s_lo) * (chunks - 1)
    same = np.sign(s_hi) == np.sign(s_lo) and s_hi != 0
    resid = float(np.mean(np.abs(np.concatenate([r_hi, r_lo]))))
    ratios = [
        _RATIO_CAP if same else 0.0,
        _at_least(min(abs(s_hi), abs(s_lo)), 0.15 * a),
        _at_least(start, 3 * a),
        _at_most(max(end, 0.0), 0.6 * start) if start > 0 else 0.0,
        _at_most(resid, 0.25 * start) if start > 0 else 0.0,
    ]
    return _Score(min(ratios))


_RULES: tuple[tuple[str, Callable[[Bars, float], _Score]], ...] = (
    ("blow_off", _blow_off),
    ("wick_exhaustion", _wick_exhaustion),
    ("flag", _flag),
    ("wedge", _wedge),
)
_WITH_POLE = frozenset({"flag", "blow_off"})


def detect(window: Bars) -> Detection:
    """The weak label of one 64-bar window (see the module docstring for the rules)."""
    if len(window) != WINDOW:
        raise ValueError(f"window: needs {WINDOW} bars, got {len(window)}")
    a = atr(window)
    closest = 0.0
    for name, rule in _RULES:
        found = rule(window, a)
        if found.score >= 1.0:
            pole = found.pole_katr if name in _WITH_POLE else 0.0
            return Detection(name, 0.5 + 0.5 * min(1.0, found.score - 1.0), pole)
        closest = max(closest, found.score)
    return Detection("none", 1.0 - 0.5 * min(1.0, closest), 0.0)


def detect_all(bars: Bars, ends: list[int] | np.ndarray) -> list[Detection]:
    """Weak labels of the windows ending at each index in ``ends``."""
    return [detect(bars.window(int(e))) for e in ends]
