"""``hindsight labelers add|list`` against a real PostgreSQL (migrates the schema first)."""

from __future__ import annotations

import asyncio
import io

import asyncpg
import pytest

from hindsight.labeling.cli import COMMAND
from hindsight.labeling.domain.passwords import verify_password
from hindsight.ops.cli import build_parser

pytestmark = pytest.mark.integration


def _run(argv: list[str]) -> int:
    args = build_parser({"labelers": COMMAND}).parse_args(argv)
    code: int = args.handler(args)
    return code


async def _hash(dsn: str, name: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT password_hash FROM labeling.labelers WHERE labeler_id = $1", name
        )
        return None if value is None else str(value)
    finally:
        await conn.close()


def test_add_and_list_labelers(
    fresh_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HINDSIGHT_DATABASE_URL", fresh_database)
    monkeypatch.setattr("sys.stdin", io.StringIO("first-password\n"))
    assert _run(["labelers", "add", "alice", "--password-stdin"]) == 0
    assert "labeler alice created" in capsys.readouterr().out
    stored = asyncio.run(_hash(fresh_database, "alice"))
    assert stored is not None and stored.startswith("scrypt$")
    assert "first-password" not in stored
    assert verify_password("first-password", stored)

    monkeypatch.setattr("sys.stdin", io.StringIO("second-password\n"))
    assert _run(["labelers", "add", "alice", "--password-stdin"]) == 0
    assert "password reset" in capsys.readouterr().out
    stored = asyncio.run(_hash(fresh_database, "alice"))
    assert stored is not None and verify_password("second-password", stored)

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert _run(["labelers", "add", "bob", "--password-stdin"]) == 2
    assert "at least 8" in capsys.readouterr().err
    assert _run(["labelers", "add", "../evil", "--password-stdin"]) == 2
    assert _run(["labelers", "list"]) == 0
    assert capsys.readouterr().out.split() == ["alice"]


def test_add_without_database_url_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HINDSIGHT_DATABASE_URL", raising=False)
    assert _run(["labelers", "add", "alice", "--password-stdin"]) == 2
    assert "HINDSIGHT_DATABASE_URL" in capsys.readouterr().err
