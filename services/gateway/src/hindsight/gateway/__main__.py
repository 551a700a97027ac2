"""``python -m hindsight.gateway``: settings → app → serve."""

from __future__ import annotations

import asyncio

from hindsight.common.logs import configure_logging
from hindsight.common.runtime import serve
from hindsight.gateway.app import build_app, build_settings


def main() -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    settings = build_settings()
    configure_logging("gateway", settings.log_level)
    app = build_app(settings)
    asyncio.run(serve("gateway", app.parts()))


if __name__ == "__main__":
    main()
