"""The ``hindsight`` command line: the operator commands, and whatever plugs in.

Built in (:data:`COMMANDS`): ``train``, ``models``, ``promote``, ``rollback``, ``score``
and ``report``, all through the services' public APIs, so a production image that
installs only ``hindsight-ops`` runs them.

Every other subcommand plugs in through an entry point in the group
``hindsight.commands`` whose object is a :class:`Command`: ``hindsight-devstack`` adds
``up``, ``status``, ``down`` and ``replay``; the services add ``embed``, ``memory`` and
``labelers``. A subcommand is there when the package that provides it is installed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points

from hindsight.common.cli import COMMAND_ENTRY_POINT_GROUP, Command

from . import commands as cmd
from .report import add_report_arguments, run_report

__all__ = [
    "COMMANDS",
    "COMMAND_ENTRY_POINT_GROUP",
    "Command",
    "all_commands",
    "build_parser",
    "main",
    "plugged_in_commands",
]

COMMANDS: dict[str, Command] = {
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
}


def _by_distribution(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (str(dist.name) if dist is not None else "", ep.name)


def plugged_in_commands() -> dict[str, Command]:
    """The ``hindsight.commands`` entry points of the installed distributions, by name.

    Ordered by distribution, then by name (the dev stack's together, then each service's).
    Built-ins win (a plug-in cannot silently replace ``promote``), and so does the first of
    two plug-ins with one name. A plug-in that cannot be loaded is left out with a warning
    on stderr, so a broken optional package never takes the operator commands down.
    """
    found: dict[str, Command] = {}
    group = entry_points().select(group=COMMAND_ENTRY_POINT_GROUP)
    for ep in sorted(group, key=_by_distribution):
        if ep.name in COMMANDS or ep.name in found:
            continue
        try:
            command = ep.load()
        except Exception as exc:  # whatever breaks in a plug-in, the rest still works
            print(
                f"hindsight: command {ep.name!r} ({ep.value}) is left out: "
                f"{type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            continue
        if isinstance(command, Command):
            found[ep.name] = command
    return found


def all_commands() -> dict[str, Command]:
    """The built-in commands, then the plugged-in ones."""
    return {**COMMANDS, **plugged_in_commands()}


def build_parser(commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    """The argument parser for ``commands`` (default: built-ins plus plug-ins)."""
    if commands is None:
        commands = all_commands()
    parser = argparse.ArgumentParser(
        prog="hindsight",
        description=(
            "Hindsight: train, list, promote, roll back and score models, the monthly "
            "report, and the commands of the installed packages (the dev stack's up, "
            "status, down and replay with hindsight-devstack)."
        ),
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
