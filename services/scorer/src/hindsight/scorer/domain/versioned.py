"""What the model store and the family store share: the loaded versions by (name,
version), one serving (default) version per name, replaced copy-on-write.

A call reads ``_items`` and ``_default`` once each, so it never sees a half-installed
version: every change builds new dicts and swaps them in (:meth:`VersionedStore._swap`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Generic, Protocol, Self, TypeVar

from hindsight.scorer.domain.deployments import Deployment, Stage

__all__ = ["Versioned", "VersionedStore"]


class Versioned(Protocol):
    """A loaded model version or family release."""

    @property
    def deployment(self) -> Deployment: ...

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def with_stage(self, stage: Stage) -> Self: ...


V = TypeVar("V", bound=Versioned)


class VersionedStore(Generic[V]):
    """Loaded versions and, per name, the default (production) one."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], V] = {}
        self._default: dict[str, str] = {}
        self._names: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        """True when nothing is loaded."""
        return not self._items

    def get(self, name: str, version: str) -> V | None:
        """One loaded version, or None."""
        return self._items.get((name, version))

    def default_version(self, name: str) -> str | None:
        """The version ``name`` serves by default, or None."""
        return self._default.get(name)

    def install(self, item: V, *, serve: bool) -> None:
        """Add or replace a version; ``serve`` makes it its name's default. One swap."""
        items = dict(self._items)
        items[(item.name, item.version)] = item
        default = dict(self._default)
        if serve:
            old = default.get(item.name)
            if old is not None and old != item.version and (item.name, old) in items:
                items[(item.name, old)] = items[(item.name, old)].with_stage("previous")
            default[item.name] = item.version
        self._swap(items, default)

    def remove(self, name: str, version: str) -> bool:
        """Unload a version unless it is its name's default; True when removed."""
        if self._default.get(name) == version or (name, version) not in self._items:
            return False
        items = dict(self._items)
        del items[(name, version)]
        self._swap(items, dict(self._default))
        return True

    def loaded(self) -> list[V]:
        """Every loaded version, sorted by name and version."""
        return [self._items[key] for key in sorted(self._items)]

    def served(self) -> list[Deployment]:
        """The deployments of what is loaded, with the default as ``production``."""
        return [
            replace(item.deployment, stage="production")
            if self._default.get(item.name) == item.version
            else item.deployment
            for item in self.loaded()
        ]

    def _swap(self, items: dict[tuple[str, str], V], default: dict[str, str]) -> None:
        names = frozenset(name for name, _ in items)
        # The hot path reads _items first; every version it can see has its name known.
        self._names = names | self._names
        self._items = items
        self._default = default
        self._names = names
