"""The shape of a ``hindsight`` subcommand, so a service can plug one in without the dev tools.

A service package exposes a :class:`Command` object through the entry point group
``hindsight.commands``; the ``hindsight`` CLI (hindsight.devstack) discovers it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["COMMAND_ENTRY_POINT_GROUP", "Command"]

COMMAND_ENTRY_POINT_GROUP = "hindsight.commands"


@dataclass(frozen=True, kw_only=True)
class Command:
    """One subcommand: its help line, its own arguments, and the handler (→ exit code)."""

    help: str
    handler: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    description: str | None = None
