"""The ``hindsight`` command line: ``up``, ``status``, ``down`` and whatever plugs in.

Subcommands live in :data:`COMMANDS`, a dict of name to :class:`Command`. Another
package adds one by registering it (``COMMANDS["embed"] = Command(...)``) or, without
importing this package at install time, through an entry point in the group
``hindsight.commands`` whose object is a :class:`Command`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from hindsight.common.cli import COMMAND_ENTRY_POINT_GROUP, Command

from . import commands as cmd
from .control import add_down_arguments, run_down, run_status
from .replay.cli import add_replay_arguments, run_replay_command
from .report import add_report_arguments, run_report
from .stack import add_up_arguments, run_up

__all__ = ["COMMANDS", "COMMAND_ENTRY_POINT_GROUP", "Command", "build_parser", "main"]

COMMANDS: dict[str, Command] = {
    "up": Command(
        help="start the dev stack (NATS, PostgreSQL, every service) and supervise it",
        description=(
            "Starts nats-server and PostgreSQL under HINDSIGHT_DATA_DIR unless "
            "HINDSIGHT_NATS_URL / HINDSIGHT_DATABASE_URL are set, then every installed "
            "service; restarts crashed ones; Ctrl-C stops everything. Ports: "
            "HINDSIGHT_DEV_NATS_PORT (14222), HINDSIGHT_DEV_NATS_MONITOR_PORT (18222), "
            "HINDSIGHT_DEV_PG_PORT (15432)."
        ),
        handler=run_up,
        add_arguments=add_up_arguments,
    ),
    "status": Command(
        help="show the running stack's processes and health (exit 0 up, 1 degraded, 3 down)",
        handler=run_status,
    ),
    "down": Command(
        help="stop the stack started by `hindsight up` and wait until it has stopped",
        handler=run_down,
        add_arguments=add_down_arguments,
    ),
    "train": Command(
        help="start a training run on the trainer (POST /v1/runs); --wait to follow it",
        handler=cmd.run_train,
        add_arguments=cmd.add_train_arguments,
    ),
    "models": Command(
        help="list models, or one model's versions, from the registry",
        handler=cmd.run_models,
        add_arguments=cmd.add_models_arguments,
    ),
    "promote": Command(
        help="promote a model version to production (audited; --force past failed gates)",
        handler=cmd.run_promote,
        add_arguments=cmd.add_promote_arguments,
    ),
    "rollback": Command(
        help="roll a model back to its previous production version (audited)",
        handler=cmd.run_rollback,
        add_arguments=cmd.add_rollback_arguments,
    ),
    "score": Command(
        help="score one feature vector over gRPC (gateway, or the scorer without one)",
        handler=cmd.run_score,
        add_arguments=cmd.add_score_arguments,
    ),
    "report": Command(
        help="monthly evaluation report of a model as one HTML file (registry + drift gauges)",
        handler=run_report,
        add_arguments=add_report_arguments,
    ),
    "replay": Command(
        help="replay market data as upstream tools + trading engine (events, charts, Score)",
        description=(
            "Plays EURUSD hourly / GOOG daily bars (or a synthetic market) through breakout "
            "and pullback rules: signal.features, gateway Score, charts (png.created), "
            "trade_meta and a rule-based suggestion (json.created), then signal.outcome. "
            "Resumes without duplicates (state in HINDSIGHT_DATA_DIR/replay/). Options "
            "default to HINDSIGHT_REPLAY_* variables; NATS from HINDSIGHT_NATS_URL or the "
            "running `hindsight up`."
        ),
        handler=run_replay_command,
        add_arguments=add_replay_arguments,
    ),
}


def _plugged_in_commands() -> dict[str, Command]:
    found: dict[str, Command] = {}
    for ep in entry_points().select(group=COMMAND_ENTRY_POINT_GROUP):
        if ep.name in COMMANDS:
            continue  # built-ins win; a plug-in cannot silently replace `down`
        command = ep.load()
        if isinstance(command, Command):
            found[ep.name] = command
    return found


def build_parser(commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    """The argument parser for ``commands`` (default: built-ins plus plug-ins)."""
    if commands is None:
        commands = {**COMMANDS, **_plugged_in_commands()}
    parser = argparse.ArgumentParser(
        prog="hindsight", description="Hindsight developer tools: the local dev stack and more."
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="local state directory (default: $HINDSIGHT_DATA_DIR or .hindsight)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in commands.items():
        sub = subparsers.add_parser(
            name, help=command.help, description=command.description or command.help
        )
        # Also accepted after the subcommand; SUPPRESS keeps the global value otherwise.
        sub.add_argument("--data-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if command.add_arguments is not None:
            command.add_arguments(sub)
        sub.set_defaults(handler=command.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hindsight`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
