"""``hindsight embed``: backfill embeddings by publishing events, never by embedding here.

* ``--folder DIR --run-id R``: one ``png.created`` per PNG under DIR (recursive, sorted).
* ``--run R``: re-publish the ``png.created`` and ``json.created`` events of run R that
  are still in the ``HINDSIGHT`` stream (its max age bounds how far back this reaches).

Events go through NATS so the running embedder (and labeling) handle them the normal,
idempotent way: ids are deterministic, and JetStream drops a re-publish inside its
2-minute duplicate window (reported as ``duplicate``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from hindsight.common.broker import STREAM, create_broker, ensure_streams, publish_event
from hindsight.common.cli import Command
from hindsight.common.errors import HindsightError, InvalidInputError
from hindsight.common.events import Event, JsonCreated, PngCreated, parse_event
from hindsight.common.paths import resolve_in_roots
from hindsight.common.settings import BaseServiceSettings

__all__ = ["COMMAND", "add_arguments", "find_pngs", "folder_events", "run"]

SOURCE = "hindsight-embed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``hindsight embed``."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--folder", type=Path, help="publish png.created for every PNG under it")
    what.add_argument("--run", metavar="RUN_ID", help="re-publish a run's events from the stream")
    parser.add_argument("--run-id", help="run_id of the folder's PNGs (required with --folder)")
    parser.add_argument("--image-type", choices=["original", "annotated"], default=None)
    parser.add_argument("--symbol", default=None)
    parser.add_argument("--timeframe", default=None)
    parser.add_argument("--author", default=None)
    parser.add_argument("--source", default=SOURCE, help=f"event source (default {SOURCE})")
    parser.add_argument(
        "--nats-url",
        default=None,
        help="default: $HINDSIGHT_NATS_URL, else the dev stack's (port $HINDSIGHT_DEV_NATS_PORT "
        "or 14222)",
    )


def find_pngs(folder: Path) -> list[Path]:
    """Every ``*.png`` file under ``folder`` (any case), sorted, as absolute paths."""
    return sorted(
        p.absolute() for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".png"
    )


def folder_events(
    paths: Iterable[Path],
    *,
    run_id: str,
    source: str,
    image_type: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
    author: str | None = None,
) -> list[PngCreated]:
    """One ``png.created`` per path (optional fields only when given)."""
    extra = {
        k: v
        for k, v in {
            "image_type": image_type,
            "symbol": symbol,
            "timeframe": timeframe,
            "author": author,
        }.items()
        if v is not None
    }
    return [
        PngCreated.create(source=source, file_path=str(path), run_id=run_id, **extra)
        for path in paths
    ]


def _nats_url(args: argparse.Namespace) -> str:
    if args.nats_url:
        return str(args.nats_url)
    if os.environ.get("HINDSIGHT_NATS_URL"):
        return os.environ["HINDSIGHT_NATS_URL"]
    return f"nats://127.0.0.1:{os.environ.get('HINDSIGHT_DEV_NATS_PORT', '14222')}"


async def _publish_all(settings: BaseServiceSettings, events: list[Event]) -> tuple[int, int]:
    broker = create_broker(settings, client_name="hindsight-embed")
    await broker.connect()
    try:
        await ensure_streams(broker, settings)
        new = duplicate = 0
        for event in events:
            ack = await publish_event(broker, event)
            if ack.duplicate:
                duplicate += 1
            else:
                new += 1
        return new, duplicate
    finally:
        await broker.stop()


async def run_events(nats_url: str, run_id: str, *, timeout: float = 2.0) -> list[Event]:
    """The png.created / json.created events of ``run_id`` still in the stream, in order."""
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=0)
    found: list[Event] = []
    try:
        js = nc.jetstream()
        for subject in (PngCreated.subject, JsonCreated.subject):
            sub = await js.pull_subscribe(
                subject,
                stream=STREAM,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.NONE,
                    deliver_policy=DeliverPolicy.ALL,
                    inactive_threshold=30.0,
                ),
            )
            try:
                while True:
                    try:
                        batch = await sub.fetch(256, timeout=timeout)
                    except TimeoutError:
                        break  # nothing (more) on this subject
                    for msg in batch:
                        try:
                            event = parse_event(subject, msg.data)
                        except InvalidInputError:
                            continue  # bad input was dead-lettered the first time
                        if getattr(event, "run_id", None) == run_id:
                            found.append(event)
                    if batch and batch[-1].metadata.num_pending == 0:
                        break
            finally:
                await sub.unsubscribe()
    finally:
        await nc.close()
    return found


def run(args: argparse.Namespace) -> int:
    """Handler of ``hindsight embed`` (exit 0 ok, 2 bad arguments, 1 NATS trouble)."""
    nats_url = _nats_url(args)
    try:
        settings = BaseServiceSettings(nats_url=nats_url)
    except ValueError as exc:
        print(f"hindsight embed: {exc}", file=sys.stderr)
        return 2
    try:
        if args.folder is not None:
            events = _folder(args, settings)
            if events is None:
                return 2
            label = f"{len(events)} png.created from {args.folder}"
        else:
            events = asyncio.run(run_events(nats_url, args.run))
            label = f"{len(events)} events of run {args.run} from the stream"
        new, duplicate = asyncio.run(_publish_all(settings, events))
    except (HindsightError, OSError, nats.errors.Error) as exc:
        print(f"hindsight embed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"published {label}: {new} new, {duplicate} duplicate")
    return 0


def _folder(args: argparse.Namespace, settings: BaseServiceSettings) -> list[Event] | None:
    if not args.run_id:
        print("hindsight embed: --run-id is required with --folder", file=sys.stderr)
        return None
    if not args.folder.is_dir():
        print(f"hindsight embed: {args.folder} is not a directory", file=sys.stderr)
        return None
    paths = find_pngs(args.folder)
    if settings.image_roots:  # the embedder would dead-letter these: say so now
        outside = []
        for path in paths:
            try:
                resolve_in_roots(path, settings.image_roots)
            except InvalidInputError:
                outside.append(path)
        if outside:
            print(
                f"hindsight embed: {len(outside)} PNG(s) outside HINDSIGHT_IMAGE_ROOTS, "
                f"e.g. {outside[0]}",
                file=sys.stderr,
            )
            return None
    return list(
        folder_events(
            paths,
            run_id=args.run_id,
            source=args.source,
            image_type=args.image_type,
            symbol=args.symbol,
            timeframe=args.timeframe,
            author=args.author,
        )
    )


COMMAND = Command(
    help="backfill embeddings: publish png.created for a folder, or re-publish a run's events",
    description=__doc__,
    handler=run,
    add_arguments=add_arguments,
)
