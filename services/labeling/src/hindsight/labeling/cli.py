"""``hindsight labelers``: create labeler accounts (and list them) in the labeling schema.

Registered by the lead as the ``labelers`` command (entry point group
``hindsight.commands``, object :data:`COMMAND`). Writes straight to PostgreSQL
(``HINDSIGHT_DATABASE_URL``), migrating the ``labeling`` schema first.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys

from hindsight.common.cli import Command
from hindsight.common.db import create_pool
from hindsight.labeling.domain.passwords import hash_password
from hindsight.labeling.storage import MIGRATIONS, Storage

__all__ = ["COMMAND", "add_arguments", "run"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``add NAME [--password-stdin]`` and ``list``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create a labeler (or reset the password of one)")
    add.add_argument("name", help="labeler id: letters, digits, . _ @ - (max 64)")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
    add.add_argument("--database-url", default=None, help="default: $HINDSIGHT_DATABASE_URL")
    lst = sub.add_parser("list", help="list labelers")
    lst.add_argument("--database-url", default=None, help="default: $HINDSIGHT_DATABASE_URL")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("passwords differ")
    return first


async def _with_storage(dsn: str) -> Storage:
    return Storage(await create_pool(dsn, schema="labeling", migrations_dir=MIGRATIONS, max_size=2))


async def _add(dsn: str, name: str, password_hash: str) -> bool:
    storage = await _with_storage(dsn)
    try:
        return await storage.add_labeler(name, password_hash)
    finally:
        await storage.pool.close()


async def _list(dsn: str) -> list[str]:
    storage = await _with_storage(dsn)
    try:
        return await storage.list_labelers()
    finally:
        await storage.pool.close()


def run(args: argparse.Namespace) -> int:
    """The command's handler; returns the exit code."""
    from hindsight.common.settings import BaseServiceSettings

    dsn = args.database_url or BaseServiceSettings().database_dsn()
    if not dsn:
        print("error: set HINDSIGHT_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    if args.action == "list":
        for name in asyncio.run(_list(dsn)):
            print(name)
        return 0
    if not _NAME.match(args.name):
        print("error: name may hold letters, digits, . _ @ - (max 64)", file=sys.stderr)
        return 2
    try:
        password = _password(args)
        if len(password) < 8:
            raise ValueError("password must have at least 8 characters")
    except (ValueError, EOFError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    created = asyncio.run(_add(dsn, args.name, hash_password(password)))
    print(f"labeler {args.name} {'created' if created else 'password reset'}")
    return 0


COMMAND = Command(
    help="manage labeling accounts: add NAME (password prompt or --password-stdin), list",
    handler=run,
    add_arguments=add_arguments,
)
