"""``hindsight replay`` / ``python -m hindsight.devstack.replay``: arguments and handler."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from .names import DATA_SETS

if TYPE_CHECKING:  # the runner pulls in pandas, grpc and NATS: only when replaying
    from .runner import ReplayCounters
    from .settings import ReplaySettings

__all__ = ["add_replay_arguments", "run_replay_command"]


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """The replay's own options; each defaults to its ``HINDSIGHT_REPLAY_*`` variable."""
    parser.add_argument(
        "--data", nargs="+", choices=DATA_SETS, default=None, help="data sets (default eurusd)"
    )
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument("--bars-per-second", type=float, default=None, help="pace (default 20)")
    speed.add_argument(
        "--fast", action="store_true", default=None, help="as fast as possible, whole data set"
    )
    parser.add_argument("--limit-signals", type=int, default=None, help="stop after N signals")
    parser.add_argument("--run-id", default=None, help="default: from data sets + rules version")
    parser.add_argument("--seed", type=int, default=None, help="seed of the synthetic market")
    parser.add_argument("--gateway", default=None, help="gateway gRPC host:port")
    parser.add_argument(
        "--no-score", dest="score", action="store_false", default=None, help="no Score calls"
    )
    parser.add_argument("--max-in-flight", type=int, default=None, help="unacked publishes")
    parser.add_argument("--status-interval", type=float, default=None, dest="status_interval_s")


_FIELDS = (
    "data",
    "bars_per_second",
    "fast",
    "limit_signals",
    "run_id",
    "seed",
    "gateway",
    "score",
    "max_in_flight",
    "status_interval_s",
)


def _settings(args: argparse.Namespace) -> ReplaySettings:
    from .settings import ReplaySettings

    overrides: dict[str, Any] = {
        name: getattr(args, name) for name in _FIELDS if getattr(args, name, None) is not None
    }
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = ReplaySettings(**overrides)
    if settings.nats_url is None:
        # Next to a running `hindsight up`: use its NATS.
        from ..state import read_state, state_path

        state = read_state(state_path(settings.data_dir.absolute()))
        url = state["endpoints"].get("nats", {}).get("url") if state else None
        if url:
            settings = settings.model_copy(update={"nats_url": url})
    return settings


def run_replay_command(args: argparse.Namespace) -> int:
    """Run the replay, printing a status line every few seconds; Ctrl-C stops it cleanly."""
    from pydantic import ValidationError

    from .runner import run_replay
    from .state import load_state, state_file

    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"hindsight replay: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if settings.nats_url is None:
        print(
            "hindsight replay: no NATS: set HINDSIGHT_NATS_URL or start `hindsight up`",
            file=sys.stderr,
        )
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)

    progress = settings.data_dir / "replay" / f"{settings.effective_run_id}.progress.json"
    state = state_file(settings.data_dir, settings.effective_run_id)
    if load_state(state, settings.effective_run_id).finished:
        # Played to the end before: every event is out; walking the bars again would only
        # take time (and overwrite the progress a status line shows).
        print(f"replay {settings.effective_run_id} already finished ({state}); nothing to do")
        return 0

    def show(counters: ReplayCounters) -> None:
        print(counters.line(), flush=True)
        # `hindsight up` reads this for its live status line.
        try:
            progress.parent.mkdir(parents=True, exist_ok=True)
            tmp = progress.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"counters": counters.snapshot(), "finished": counters.finished})
            )
            os.replace(tmp, progress)
        except OSError:
            pass

    print(
        f"replaying {', '.join(settings.data)} as run {settings.effective_run_id}; "
        f"charts in {settings.effective_image_dir / settings.effective_run_id}; "
        f"Score via {settings.gateway_target if settings.score else 'nothing (--no-score)'}",
        flush=True,
    )
    try:
        counters = run_replay(settings, stop, on_status=show)
    except Exception as exc:
        print(f"hindsight replay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0 if counters.finished or stop.is_set() else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m hindsight.devstack.replay``: the same as ``hindsight replay``."""
    parser = argparse.ArgumentParser(
        prog="python -m hindsight.devstack.replay",
        description="Market replay feeder: signals, charts, trade docs, Score, outcomes.",
    )
    parser.add_argument("--data-dir", default=None, help="default $HINDSIGHT_DATA_DIR")
    add_replay_arguments(parser)
    return run_replay_command(parser.parse_args(argv))
