"""The admin token of the data dir (the dev stack, the `hindsight` commands)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hindsight.common.cli import admin_token, token_path

pytestmark = pytest.mark.unit


def test_token_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = admin_token(tmp_path, environ={})
    assert len(first) >= 32
    mode = stat.S_IMODE(token_path(tmp_path).stat().st_mode)
    assert mode == 0o600
    assert admin_token(tmp_path, environ={}) == first


def test_environment_wins_and_writes_nothing(tmp_path: Path) -> None:
    assert admin_token(tmp_path, environ={"HINDSIGHT_ADMIN_TOKEN": "from-env"}) == "from-env"
    assert not token_path(tmp_path).exists()
