"""The resume state of a replay run: ``HINDSIGHT_DATA_DIR/replay/<run_id>.json``.

``cursor`` is, per data set, the last bar whose every action was published and
acknowledged; ``done`` lists the actions past a cursor that were done anyway (a Score
call, which the gateway would log twice, and the tail of a ``--limit-signals`` run).
A restart skips both, so nothing is sent twice.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ReplayState", "load_state", "save_state", "state_file"]


@dataclass
class ReplayState:
    run_id: str
    cursor: dict[str, int] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    finished: bool = False

    def is_done(self, data: str, bar: int, key: str) -> bool:
        return bar <= self.cursor.get(data, -1) or key in self.done

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "run_id": self.run_id,
            "cursor": self.cursor,
            "done": sorted(self.done),
            "finished": self.finished,
        }


def state_file(data_dir: Path, run_id: str) -> Path:
    return data_dir / "replay" / f"{run_id}.json"


def load_state(path: Path, run_id: str) -> ReplayState:
    """The saved state, or a fresh one when there is none."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return ReplayState(run_id=run_id)
    if raw.get("run_id") != run_id:
        raise ValueError(f"{path} belongs to run {raw.get('run_id')!r}, not {run_id!r}")
    return ReplayState(
        run_id=run_id,
        cursor={str(k): int(v) for k, v in raw.get("cursor", {}).items()},
        done=set(raw.get("done", [])),
        finished=bool(raw.get("finished", False)),
    )


def save_state(path: Path, state: ReplayState) -> None:
    """Write atomically: a crash leaves the previous state or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=1))
    os.replace(tmp, path)
