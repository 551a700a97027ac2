"""The dev stack's admin token: generated once, kept in the data dir, never printed."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

__all__ = ["admin_token", "labeler_password", "labeler_password_path", "token_path"]


def token_path(data_dir: Path) -> Path:
    """Where the dev stack keeps its admin token (mode 0600)."""
    return data_dir / "secrets" / "admin_token"


def labeler_password_path(data_dir: Path) -> Path:
    """Where the dev stack keeps the password of its labeler account ``trader`` (mode 0600)."""
    return data_dir / "secrets" / "labeler_password"


def _secret_file(path: Path, length: int) -> str:
    """The secret in ``path``, created (mode 0600) on first use."""
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
    return _secret_file(token_path(data_dir), 32)


def labeler_password(data_dir: Path) -> str:
    """The dev labeler's password (created on first use; shown to the user by ``up``)."""
    return _secret_file(labeler_password_path(data_dir), 12)
