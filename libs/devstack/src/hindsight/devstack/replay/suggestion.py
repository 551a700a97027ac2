"""A rule-based stand-in for the LLM's trade suggestion. It is NOT an LLM, and says so.

Points for the signal's context only (never its outcome): trend alignment on the bar's
timeframe and the higher one, the reward-to-risk ratio, and no chasing of an overbought
(oversold) RSI. Disagreement with the outcome is natural: the grade is a heuristic.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SUGGESTION_MODEL", "suggest"]

SUGGESTION_MODEL = "rule-based-stand-in/1"
_GRADES = ("D", "C", "B", "A")


def suggest(*, trade_id: str, side: str, setup: str, features: dict[str, float]) -> dict[str, Any]:
    """The ``llm_suggestion`` payload for one signal."""
    reasons: list[str] = []
    score = 0
    if features["trend_align"] > 0:
        score += 1
        reasons.append("with the EMA(50) trend")
    else:
        reasons.append("against the EMA(50) trend")
    if features["htf_align"] > 0:
        score += 1
        reasons.append("with the higher-timeframe bias")
    else:
        reasons.append("against the higher-timeframe bias")
    if features["risk_reward"] >= 1.9:
        score += 1
        reasons.append(f"R:R {features['risk_reward']:.1f}")
    rsi = features["rsi_14"]
    stretched = rsi > 75 if side == "buy" else rsi < 25
    if stretched:
        score -= 1
        reasons.append(f"RSI {rsi:.0f} already stretched")
    grade = _GRADES[max(0, min(3, score))]
    label = "approved" if score >= 2 else "rejected" if score <= 0 else "review"
    confidence = round(0.5 + 0.12 * abs(score - 1.5), 2)
    comment = f"{setup} {side}: " + "; ".join(reasons) + " (rule-based stand-in, not an LLM)"
    return {
        "trade_id": trade_id,
        "label": label,
        "quality_grade": grade,
        "confidence": confidence,
        "comment": comment,
        "model": SUGGESTION_MODEL,
    }
