"""``hindsight memory backup --out FILE`` / ``hindsight memory restore FILE``.

Both go through the running service's admin API (``POST /v1/backup``, ``POST
/v1/restore``), which holds its write lock meanwhile, so Chroma and the link table are
saved and rebuilt as one consistent cut. ``HINDSIGHT_MEMORY_URL`` (default
``http://127.0.0.1:8081``) names the service; the admin token is ``HINDSIGHT_ADMIN_TOKEN``
or the data dir's token file (``hindsight.common.cli.admin_token``, as every command).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import httpx

from hindsight.common.cli import Command, admin_token, resolve_data_dir

__all__ = ["COMMAND", "add_arguments", "run"]


def _base() -> str:
    return os.environ.get("HINDSIGHT_MEMORY_URL", "http://127.0.0.1:8081").rstrip("/")


def _headers(args: argparse.Namespace) -> dict[str, str]:
    token = admin_token(resolve_data_dir(getattr(args, "data_dir", None)))
    return {"Authorization": f"Bearer {token}"}


def _fail(response: httpx.Response) -> int:
    response.read()
    print(f"hindsight memory: HTTP {response.status_code}: {response.text}", file=sys.stderr)
    return 1


def run_backup(args: argparse.Namespace) -> int:
    """Stream the service's backup archive into ``--out``."""
    out = Path(args.out)
    partial = out.with_name(out.name + ".partial")
    url = f"{_base()}/v1/backup"
    try:
        with httpx.stream("POST", url, headers=_headers(args), timeout=None) as response:
            if response.status_code != 200:
                return _fail(response)
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
            counts = response.headers.get("x-hindsight-backup-counts", "{}")
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        print(f"hindsight memory: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    partial.replace(out)
    print(f"backup written to {out}: {counts}")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    """Upload an archive; the service replaces its content and verifies the counts."""
    path = Path(args.file)
    if not path.is_file():
        print(f"hindsight memory: {path} is not a file", file=sys.stderr)
        return 2
    url = f"{_base()}/v1/restore"
    try:
        with path.open("rb") as handle:
            response = httpx.post(
                url,
                content=handle,
                headers={**_headers(args), "Content-Type": "application/gzip"},
                timeout=None,
            )
    except httpx.HTTPError as exc:
        print(f"hindsight memory: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        return _fail(response)
    print(f"restored: {json.dumps(response.json()['restored'])}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``backup --out FILE`` and ``restore FILE`` subcommands."""
    sub = parser.add_subparsers(dest="memory_command", metavar="ACTION", required=True)
    backup = sub.add_parser("backup", help="save Chroma and the link table into a tar.gz")
    backup.add_argument("--out", required=True, help="archive to write (.tar.gz)")
    backup.set_defaults(memory_handler=run_backup)
    restore = sub.add_parser(
        "restore", help="replace memory's content with a backup and verify counts"
    )
    restore.add_argument("file", help="archive written by `hindsight memory backup`")
    restore.set_defaults(memory_handler=run_restore)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    code: int = args.memory_handler(args)
    return code


COMMAND = Command(
    help="back up or restore the memory service (Chroma vectors + link table)",
    description=(
        "backup --out FILE: the running memory service writes a consistent tar.gz of its "
        "Chroma collections, link table and labels; restore FILE: it wipes and rebuilds "
        "both from the archive and verifies the counts. HINDSIGHT_MEMORY_URL picks the "
        "service (default http://127.0.0.1:8081)."
    ),
    handler=run,
    add_arguments=add_arguments,
)
