"""The live status line: built from service answers, robust to services that do not answer."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from hindsight.devstack.live import LiveStatus, format_status, gather

pytestmark = pytest.mark.unit

URLS = {
    "registry": "http://r",
    "memory": "http://m",
    "labeling": "http://l",
    "nats_monitor": "http://n",
}
JSZ = {
    "account_details": [
        {
            "stream_detail": [
                {"name": "HINDSIGHT", "state": {"messages": 7231}},
                {"name": "HINDSIGHT_DLQ", "state": {"messages": 2}},
            ]
        }
    ]
}
METRICS = """# HELP hindsight_labeling_queue_items Items
hindsight_labeling_queue_items{status="unlabeled"} 300.0
hindsight_labeling_queue_items{status="labeled"} 95.0
hindsight_labeling_queue_items{status="review"} 5.0
"""


def _answers(url: str) -> Any:
    return {
        "http://r/v1/status": {
            "last_runs": [{"status": "completed"}, {"status": "skipped"}],
            "production": [{"model_name": "trade_success", "version": "v3"}],
        },
        "http://m/v1/collections": {
            "collections": [
                {"name": "trade_cases", "records": 800},
                {"name": "theory_docs", "records": 20},
            ]
        },
        "http://l/metrics": METRICS,
        "http://n/jsz?streams=true": JSZ,
    }.get(url)


def test_line_summarises_every_part(tmp_path: Path) -> None:
    (tmp_path / "replay").mkdir()
    (tmp_path / "replay" / "run.progress.json").write_text(
        json.dumps({"counters": {"signals": 412, "scored": 412, "fallbacks": 30, "outcomes": 398}})
    )
    line = format_status(gather(URLS, tmp_path, fetch=_answers))
    assert "replay 412 signals, 412 scored (30 fallback), 398 closed" in line
    assert "memory 820 records" in line
    assert "labels 100/400" in line
    assert "training 2 runs, last completed" in line
    assert "production trade_success v3" in line
    assert line.startswith("events 7231 (dlq 2) · replay")


def test_services_that_do_not_answer_show_dashes(tmp_path: Path) -> None:
    line = format_status(gather(URLS, tmp_path, fetch=lambda url: None))
    assert line == "events - (dlq -) · memory - records · labels -/- · registry -"


def test_prints_only_when_the_line_changes(tmp_path: Path) -> None:
    out = io.StringIO()
    live = LiveStatus(URLS, tmp_path, stop_event=threading.Event(), out=out, fetch=_answers)
    assert live.tick() is not None
    assert live.tick() is None
    assert out.getvalue().count("\n") == 1
