"""The dev stack's labeler password: generated once, kept in the data dir.

The admin token (the same kind of file) is :func:`hindsight.common.cli.admin_token`: the
operator commands and the services' plug-in commands read it without the dev tools.
"""

from __future__ import annotations

from pathlib import Path

from hindsight.common.cli import secret_file

__all__ = ["labeler_password", "labeler_password_path"]


def labeler_password_path(data_dir: Path) -> Path:
    """Where the dev stack keeps the password of its labeler account ``trader`` (mode 0600)."""
    return data_dir / "secrets" / "labeler_password"


def labeler_password(data_dir: Path) -> str:
    """The dev labeler's password (created on first use; shown to the user by ``up``)."""
    return secret_file(labeler_password_path(data_dir), 12)
