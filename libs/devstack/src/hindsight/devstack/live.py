"""The compact live status line of ``hindsight up``: what is happening now, from public APIs.

Every few seconds it asks the services what they hold (registry status, memory collection
counts, labeling progress, the replay feeder's progress file) and prints one line when
something changed, e.g.::

    [12:01:33] events 3120 (dlq 0) · replay 412 signals, 412 scored (30 fallback),
    398 closed · memory 820 records · labels 0/410 · training 2 runs, last completed ·
    production trade_success v3

A probe that does not answer shows ``-``: the line never blocks or fails the stack.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["LiveStatus", "format_status", "gather"]

Fetch = Callable[[str], Any]


def _get(url: str) -> Any:
    """JSON (or text for /metrics) of a 200 answer, else None."""
    try:
        response = httpx.get(url, timeout=2.0)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    if url.endswith("/metrics"):
        return response.text
    try:
        return response.json()
    except ValueError:
        return None


def _metric(text: str | None, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """Sum of the samples of ``name`` (matching ``labels``) in a Prometheus text page."""
    if not text:
        return None
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items())
    ]
    return sum(values) if values else None


def _replay_progress(data_dir: Path) -> dict[str, Any] | None:
    """The newest ``data_dir/replay/<run_id>.progress.json`` (written by the feeder)."""
    folder = data_dir / "replay"
    if not folder.is_dir():
        return None
    files = sorted(folder.glob("*.progress.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None


def gather(urls: Mapping[str, str], data_dir: Path, *, fetch: Fetch = _get) -> dict[str, Any]:
    """One snapshot of the stack's activity; missing parts are None."""
    snapshot: dict[str, Any] = {"replay": _replay_progress(data_dir)}
    if "registry" in urls:
        snapshot["registry"] = fetch(f"{urls['registry']}/v1/status")
    if "memory" in urls:
        snapshot["memory"] = fetch(f"{urls['memory']}/v1/collections")
    if "labeling" in urls:
        snapshot["labeling"] = fetch(f"{urls['labeling']}/metrics")
    if "nats_monitor" in urls:
        snapshot["nats"] = fetch(f"{urls['nats_monitor']}/jsz?streams=true")
    return snapshot


def _stream_messages(jsz: Any) -> dict[str, int]:
    """Messages per JetStream stream from the NATS monitor's ``/jsz?streams=true``."""
    if not isinstance(jsz, dict):
        return {}
    counts: dict[str, int] = {}
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            counts[str(stream.get("name"))] = int((stream.get("state") or {}).get("messages", 0))
    return counts


def _count(value: Any) -> str:
    return "-" if value is None else str(int(value))


def _memory_total(stats: Any) -> int | None:
    """Records over memory's logical collections (``GET /v1/collections``)."""
    if not isinstance(stats, dict):
        return None
    return sum(int(c.get("records", 0)) for c in stats.get("collections") or [])


def format_status(snapshot: Mapping[str, Any]) -> str:
    """The one-line summary of a snapshot (without the time prefix)."""
    parts: list[str] = []
    if "nats" in snapshot:
        streams = _stream_messages(snapshot["nats"])
        events = streams.get("HINDSIGHT")
        dlq = streams.get("HINDSIGHT_DLQ")
        parts.append(f"events {_count(events)} (dlq {_count(dlq)})")
    replay = snapshot.get("replay")
    if isinstance(replay, dict):
        counters = replay.get("counters", replay)
        state = " (done)" if replay.get("finished") else ""
        parts.append(
            f"replay {_count(counters.get('signals'))} signals, "
            f"{_count(counters.get('scored'))} scored "
            f"({_count(counters.get('fallbacks'))} fallback), "
            f"{_count(counters.get('outcomes'))} closed{state}"
        )
    if "memory" in snapshot:
        parts.append(f"memory {_count(_memory_total(snapshot['memory']))} records")
    if "labeling" in snapshot:
        text = snapshot["labeling"]
        labeled = _metric(text, "hindsight_labeling_queue_items", {"status": "labeled"})
        review = _metric(text, "hindsight_labeling_queue_items", {"status": "review"})
        total = _metric(text, "hindsight_labeling_queue_items")
        done = None if labeled is None else labeled + (review or 0)
        parts.append(f"labels {_count(done)}/{_count(total)}")
    registry = snapshot.get("registry")
    if isinstance(registry, dict):
        runs = registry.get("last_runs") or []
        last = runs[0]["status"] if runs else "none"
        production = registry.get("production") or []
        serving = ", ".join(f"{p['model_name']} {p['version']}" for p in production) or "none yet"
        parts.append(f"training {len(runs)} runs, last {last}")
        parts.append(f"production {serving}")
    elif "registry" in snapshot:
        parts.append("registry -")
    return " · ".join(parts)


class LiveStatus:
    """A daemon thread printing the status line when it changes (at most every ``interval``)."""

    def __init__(
        self,
        urls: Mapping[str, str],
        data_dir: Path,
        *,
        stop_event: threading.Event,
        interval: float = 5.0,
        out: TextIO | None = None,
        fetch: Fetch = _get,
    ) -> None:
        self.urls = dict(urls)
        self.data_dir = data_dir
        self.stop_event = stop_event
        self.interval = interval
        self.out = out or sys.stdout
        self.fetch = fetch
        self.last_line = ""
        self._thread: threading.Thread | None = None

    def tick(self) -> str | None:
        """Gather once; print and return the line if it changed."""
        line = format_status(gather(self.urls, self.data_dir, fetch=self.fetch))
        if not line or line == self.last_line:
            return None
        self.last_line = line
        stamp = datetime.now().strftime("%H:%M:%S")
        print(f"[{stamp}] {line}", file=self.out, flush=True)
        return line

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.tick()
            except Exception:  # a status line must never take the stack down
                time.sleep(self.interval)

    def start(self) -> None:
        """Start printing in the background (stops with ``stop_event``)."""
        self._thread = threading.Thread(target=self._loop, name="live-status", daemon=True)
        self._thread.start()
