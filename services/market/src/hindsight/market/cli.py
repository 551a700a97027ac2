"""``hindsight bars import``: bulk history into market, through the same integrity gate.

Registered as the ``bars`` command (entry point group ``hindsight.commands``, object
:data:`COMMAND`). Writes straight to PostgreSQL (``HINDSIGHT_DATABASE_URL``), migrating the
``market`` schema first; idempotent (a second import of the same file stores nothing new).
A running market service labels the signals these bars complete at its next sweep.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from hindsight.common.cli import Command
from hindsight.common.db import create_pool
from hindsight.common.errors import InvalidInputError
from hindsight.market.bulk import DATASETS, dataset_path, read_bars
from hindsight.market.ingest import BarIngest, IngestReport
from hindsight.market.service import ClusterRefresher
from hindsight.market.storage import MIGRATIONS, SCHEMA, BarIn, Storage

__all__ = ["COMMAND", "CHUNK", "add_arguments", "import_bars", "run"]

CHUNK = 2000
"""Bars per transaction (one multi-row write each)."""
_SHOW = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``import FILE --symbol S --timeframe TF`` or ``import --dataset NAME``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = sub.add_parser("import", help="import bars from a CSV or Parquet file, or a dataset")
    imp.add_argument("file", nargs="?", type=Path, help="CSV or Parquet (.parquet) file")
    imp.add_argument("--symbol", help="symbol of the file's bars (default: the dataset's name)")
    imp.add_argument("--timeframe", help="timeframe of the file's bars: 1m 5m 15m 30m 1h 4h 1d 1mo")
    imp.add_argument(
        "--dated",
        choices=("open", "period_end"),
        default=None,
        help="the time column holds each bar's open (default), or for 1mo bars the month's "
        "last day",
    )
    imp.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        help="a CSV the backtesting package ships (EURUSD hourly, GOOG daily, BTCUSD monthly)",
    )
    imp.add_argument("--database-url", default=None, help="default: $HINDSIGHT_DATABASE_URL")


async def import_bars(dsn: str, items: Sequence[BarIn]) -> IngestReport:
    """Gate and store ``items`` in chunks; re-rank the liquidity clusters after."""
    pool = await create_pool(dsn, schema=SCHEMA, migrations_dir=MIGRATIONS, max_size=2)
    storage = Storage(pool)
    total = IngestReport()
    try:
        ingest = BarIngest(storage)
        for start in range(0, len(items), CHUNK):
            report = await ingest.ingest(
                items[start : start + CHUNK], source="import", strict=False
            )
            total.stored += report.stored
            total.duplicates += report.duplicates
            total.corrected += report.corrected
            total.rejected.extend(report.rejected)
            total.gaps.extend(report.gaps)
            total.series |= report.series
        await ClusterRefresher(storage, every_s=60.0).refresh()
    finally:
        await pool.close()
    return total


def _items(args: argparse.Namespace) -> list[BarIn]:
    if args.dataset is not None:
        if args.file is not None:
            raise InvalidInputError("give a file or --dataset, not both", field="file")
        dataset = DATASETS[args.dataset]
        return read_bars(
            dataset_path(dataset.name),
            symbol=args.symbol or dataset.name,
            timeframe=args.timeframe or dataset.timeframe,
            source=f"dataset:{dataset.name}",
            dated=args.dated or dataset.dated,
        )
    if args.file is None:
        raise InvalidInputError("give a file or --dataset", field="file")
    if not args.symbol or not args.timeframe:
        raise InvalidInputError("a file needs --symbol and --timeframe", field="symbol")
    return read_bars(
        args.file, symbol=args.symbol, timeframe=args.timeframe, dated=args.dated or "open"
    )


def _print(report: IngestReport, *, read: int) -> None:
    gaps = sum(g.missing for g in report.gaps)
    print(
        f"read {read} bars: {report.stored} stored, {report.duplicates} already there, "
        f"{report.corrected} corrected, {len(report.rejected)} rejected; "
        f"{gaps} missing bar(s) in {len(report.gaps)} gap(s) reported (not filled)"
    )
    for rejected in report.rejected[:_SHOW]:
        bar = rejected.item.bar
        print(f"  rejected {bar.ts.isoformat()}: {rejected.describe()}", file=sys.stderr)
    if len(report.rejected) > _SHOW:
        print(f"  ... and {len(report.rejected) - _SHOW} more", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """The command's handler: 0 when every bar passed the gate, 1 when some were rejected
    (the good ones are stored), 2 on bad arguments."""
    from hindsight.common.settings import BaseServiceSettings

    dsn = args.database_url or BaseServiceSettings().database_dsn()
    if not dsn:
        print("error: set HINDSIGHT_DATABASE_URL or pass --database-url", file=sys.stderr)
        return 2
    try:
        items = _items(args)
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(import_bars(dsn, items))
    _print(report, read=len(items))
    return 1 if report.rejected else 0


COMMAND = Command(
    help="market bars: import FILE --symbol S --timeframe TF | import --dataset EURUSD|GOOG|BTCUSD",
    handler=run,
    add_arguments=add_arguments,
)
