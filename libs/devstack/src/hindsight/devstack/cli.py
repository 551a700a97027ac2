"""The dev stack's subcommands of the ``hindsight`` command: ``up``, ``status``, ``down``,
``replay``.

The command itself is :mod:`hindsight.ops.cli` (package ``hindsight-ops``, which holds
the operator commands); these plug into it through the entry point group
``hindsight.commands`` (see this package's pyproject), so they are there exactly when
``hindsight-devstack`` is installed. ``python -m hindsight.devstack.cli`` runs the whole
``hindsight`` command, as ``python -m hindsight.devstack`` does.
"""

from __future__ import annotations

import sys

from hindsight.common.cli import Command

from .control import add_down_arguments, run_down, run_status
from .replay.cli import add_replay_arguments, run_replay_command
from .stack import add_up_arguments, run_up

__all__ = ["DOWN", "REPLAY", "STATUS", "UP"]

UP = Command(
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
)
STATUS = Command(
    help="show the running stack's processes and health (exit 0 up, 1 degraded, 3 down)",
    handler=run_status,
)
DOWN = Command(
    help="stop the stack started by `hindsight up` and wait until it has stopped",
    handler=run_down,
    add_arguments=add_down_arguments,
)
REPLAY = Command(
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
)


if __name__ == "__main__":
    from hindsight.ops.cli import main

    sys.exit(main())
