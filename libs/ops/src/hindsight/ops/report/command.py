"""The CLI side of ``hindsight report``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import httpx

from ..commands import service_url

__all__ = ["add_report_arguments", "run_report"]


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """``--month YYYY-MM [--model NAME] [--out FILE.html] [--metrics-url URL ...]``."""
    parser.add_argument("--month", required=True, help="the month to report, YYYY-MM (UTC)")
    parser.add_argument("--model", default="trade_success", help="model name")
    parser.add_argument(
        "--out", type=Path, help="output file (default report-<model>-<month>.html)"
    )
    parser.add_argument(
        "--registry-url",
        default=service_url("registry"),
        help="registry base URL (HINDSIGHT_REGISTRY_URL)",
    )
    parser.add_argument(
        "--metrics-url",
        action="append",
        dest="metrics_urls",
        help="a /metrics page with drift gauges (repeatable; default: the trainer's and the "
        "scorer's, HINDSIGHT_TRAINER_URL / HINDSIGHT_SCORER_METRICS_URL)",
    )


def run_report(args: argparse.Namespace) -> int:
    """Collect, render, write; exit 1 with a readable message when the registry fails."""
    # Imported here: matplotlib must not slow down every other `hindsight` command.
    from .render import render_html
    from .source import collect, month_window

    try:
        month_window(args.month)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    urls = args.metrics_urls
    if urls is None:
        urls = [
            service_url("trainer") + "/metrics",
            os.environ.get("HINDSIGHT_SCORER_METRICS_URL", service_url("scorer") + "/metrics"),
        ]
    try:
        data = collect(
            registry_url=args.registry_url,
            model_name=args.model,
            month=args.month,
            metrics_urls=urls,
        )
    except httpx.HTTPStatusError as exc:
        print(
            f"error: registry answered {exc.response.status_code}: {exc.response.text}",
            file=sys.stderr,
        )
        return 1
    except httpx.HTTPError as exc:
        print(f"error: registry unreachable at {args.registry_url}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # an answer that is not an evaluation report
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out: Path = args.out or Path(f"report-{args.model}-{args.month}.html")
    out.write_text(render_html(data), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    return 0
