"""Issue 12's soak at full length, printed: the whole stack at 1,000 calls/s
(9 phases of 15 s: no fault, then kill -9 of the scorer, the registry, NATS, PostgreSQL,
the trainer, the embedder, memory and market in turn).

Before the faults, with the whole stack and its workload running: closed-loop throughput
(16 calls in flight) through the gateway and to the scorer alone, counted as real scores
answered within the deadline, next to bare ONNX Runtime in this process (one row per
call) in the same run.

Set HINDSIGHT_SOAK_RATE / HINDSIGHT_SOAK_PHASE_S to try other rates. Prints the table of
``hindsight.devstack.soak.format_report``; asserts nothing about timings.
Run with `pytest -m bench bench/test_bench_soak.py -s`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hindsight.devstack.soak import SoakPlan, format_report, run_soak

sys.path.insert(0, str(Path(__file__).parents[1] / "services" / "scorer" / "tests"))
from scorer_testkit import build_artifact  # noqa: E402

pytestmark = pytest.mark.bench


@pytest.mark.timeout(1800)
def test_bench_soak_full_length(hindsight_test_dir: Path) -> None:
    root = hindsight_test_dir / "soak-bench"
    artifact = build_artifact(root / "artifacts", version="20260101T000000Z-soak01", n_features=12)
    plan = SoakPlan(
        rate=float(os.environ.get("HINDSIGHT_SOAK_RATE", "1000")),
        phase_s=float(os.environ.get("HINDSIGHT_SOAK_PHASE_S", "15")),
        throughput_s=10.0,
    )
    report = run_soak(
        root,
        plan,
        deployment=artifact.deployment(),
        features=dict.fromkeys(artifact.feature_names, 0.5),
    )
    session = artifact.session()
    row = {session.get_inputs()[0].name: np.full((1, 12), 0.5, dtype=np.float32)}
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < 3.0:
        session.run(None, row)
        n += 1
    ort_per_s = n / (time.perf_counter() - began)
    print("\n" + format_report(report))
    print(f"bare ONNX Runtime in process, one row per call: {ort_per_s:,.0f} rows/s")
    for target, (per_s, _) in report.throughput.items():
        print(f"  {target}: {per_s:,.0f}/s = 1/{ort_per_s / max(per_s, 1e-9):.0f} of bare ORT")
