"""What a ``hindsight`` subcommand needs, so a service can plug one in without the dev tools.

A package exposes a :class:`Command` object through the entry point group
``hindsight.commands``; the ``hindsight`` CLI (``hindsight.ops.cli``) discovers it. A
command that calls a write API authenticates with :func:`admin_token` of the local data
directory (:func:`resolve_data_dir`).
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COMMAND_ENTRY_POINT_GROUP",
    "Command",
    "admin_token",
    "resolve_data_dir",
    "secret_file",
    "token_path",
]

COMMAND_ENTRY_POINT_GROUP = "hindsight.commands"


@dataclass(frozen=True, kw_only=True)
class Command:
    """One subcommand: its help line, its own arguments, and the handler (→ exit code)."""

    help: str
    handler: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    description: str | None = None


def resolve_data_dir(override: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``--data-dir``, else $HINDSIGHT_DATA_DIR, else ``.hindsight``; always absolute."""
    env = os.environ if environ is None else environ
    raw = override or env.get("HINDSIGHT_DATA_DIR") or ".hindsight"
    return Path(raw).expanduser().absolute()


def token_path(data_dir: Path) -> Path:
    """Where the data dir keeps the admin token (mode 0600)."""
    return data_dir / "secrets" / "admin_token"


def secret_file(path: Path, length: int) -> str:
    """The secret in ``path``, created (random, mode 0600) on first use."""
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = secrets.token_urlsafe(length)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secret + "\n")
    return secret


def admin_token(data_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """``HINDSIGHT_ADMIN_TOKEN`` when set, else the data dir's token (created on first use)."""
    env = os.environ if environ is None else environ
    if env.get("HINDSIGHT_ADMIN_TOKEN"):
        return env["HINDSIGHT_ADMIN_TOKEN"]
    return secret_file(token_path(data_dir), 32)
