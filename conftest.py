"""Root conftest: the Hindsight test harness (real NATS JetStream and PostgreSQL fixtures).

Every test carries one of the category markers below (a module-level ``pytestmark`` or a
decorator): ``make test-unit`` selects with ``-m unit``, so a test without a category would
be skipped there without a word. Collection fails instead, naming the test.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["hindsight.devstack.pytest_plugin"]

# The categories of pyproject.toml's [tool.pytest.ini_options] markers; `connected` (a NATS
# handler test against a real nats-server) is one on its own.
CATEGORIES = frozenset({"unit", "integration", "connected", "browser", "bench", "soak"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything, so every run checks all
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [
        item.nodeid
        for item in items
        if not any(mark.name in CATEGORIES for mark in item.iter_markers())
    ]
    if missing:
        names = "\n  ".join(missing)
        raise pytest.UsageError(
            f"{len(missing)} test(s) carry none of the category markers "
            f"({', '.join(sorted(CATEGORIES))}); give each module a `pytestmark = "
            f"pytest.mark.unit` (or another category):\n  {names}"
        )
