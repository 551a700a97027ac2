"""Issue 12's soak: the whole stack, an open-loop client through the gateway, kill -9.

Every process of the dev stack runs (private NATS and PostgreSQL so they can be killed),
a model is served, a plain nats-py publisher feeds the learning side, and open-loop
clients compiled from the proto call gateway ``Score`` with a 100 ms deadline while the
scorer, the registry, NATS, PostgreSQL, the trainer, the embedder, memory and market are killed
with SIGKILL in turn and restarted. Every call must be a real score or a fallback with its
reason: no gRPC error, no answer after the deadline.

``make test`` runs it first, alone (6 s phases at 100 calls/s; ``HINDSIGHT_SOAK_PHASE_S`` and
``HINDSIGHT_SOAK_RATE`` change them), before the rest of the suite, and prints the table with
what else used the CPU meanwhile; ``make soak`` runs only it; ``bench/test_bench_soak.py`` runs
the full 120 s phases at 1,000 calls/s. It runs before the suite and not among it: on these 2
cores, at the end of a full run it missed deadlines where alone it did not (README, Known gaps).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hindsight.devstack.soak import TARGETS, SoakPlan, format_report, run_soak

sys.path.insert(0, str(Path(__file__).parents[2] / "services" / "scorer" / "tests"))
from scorer_testkit import build_artifact  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.soak]


@pytest.mark.timeout(900)
def test_score_path_holds_under_load_while_each_part_is_killed(hindsight_test_dir: Path) -> None:
    root = hindsight_test_dir / f"soak-{os.getpid()}"
    artifact = build_artifact(root / "artifacts", version="20260101T000000Z-soak01", n_features=12)
    plan = SoakPlan(
        rate=float(os.environ.get("HINDSIGHT_SOAK_RATE", "100")),
        phase_s=float(os.environ.get("HINDSIGHT_SOAK_PHASE_S", "6")),
        clients=1,
        down_s=1.0,
    )
    report = run_soak(
        root,
        plan,
        deployment=artifact.deployment(),
        features=dict.fromkeys(artifact.feature_names, 0.5),
    )
    print("\n" + format_report(report))
    phases = {phase.name: phase for phase in report.phases}
    assert list(phases) == ["baseline", *TARGETS]
    for phase in report.phases:
        assert phase.stats.calls >= plan.rate * plan.phase_s * 0.9, phase.name
        assert phase.stats.errors == {}, (phase.name, phase.stats.errors)
        assert phase.stats.late == 0, (phase.name, phase.stats.late)
    # Without a fault the gateway serves real scores.
    baseline = phases["baseline"].stats
    assert baseline.scores >= baseline.calls * 0.99, baseline
    # Killing the scorer is answered with fallbacks (with reasons), then scores resume;
    # killing anything on the learning side (or NATS, PostgreSQL) changes nothing.
    assert sum(phases["scorer"].stats.fallbacks.values()) > 0
    assert set(phases["scorer"].stats.fallbacks) <= {"unavailable", "breaker_open", "deadline"}
    for name in TARGETS[1:]:
        assert phases[name].stats.scores >= phases[name].stats.calls * 0.99, (
            name,
            phases[name].stats,
        )
    assert report.errors == 0
