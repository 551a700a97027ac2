"""Paths from events and requests, confined to configured roots (``HINDSIGHT_IMAGE_ROOTS``)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from pathlib import Path

from hindsight.common.errors import InvalidInputError

__all__ = ["canonical_path", "resolve_in_roots"]

_SLASHES = re.compile(r"/{2,}")


def canonical_path(path: str) -> str:
    """The one spelling of an absolute POSIX path: ``.`` and ``..`` segments, repeated and
    trailing slashes removed (``/data//a/./b/../c.png`` → ``/data/a/c.png``).

    Lexical, so every service computes it the same way without the file system (the id of
    a memory record is derived from it); symlinks are followed only where a file is read
    (:func:`resolve_in_roots`). ValueError for a relative path: relative to what?
    """
    if not path.startswith("/"):
        raise ValueError("must be an absolute path (start with /)")
    return posixpath.normpath(_SLASHES.sub("/", path))


def resolve_in_roots(
    path: str | Path, roots: Sequence[Path], *, field: str = "file_path", must_exist: bool = True
) -> Path:
    """The resolved ``path`` (symlinks followed), refused unless it lies inside one of ``roots``.

    Relative paths are taken relative to the first root. No roots configured means every
    path is refused: a service must be told where it may read.
    """
    if not roots:
        raise InvalidInputError(
            "no image roots are configured (HINDSIGHT_IMAGE_ROOTS)", field=field
        )
    raw = Path(path)
    candidate = raw if raw.is_absolute() else roots[0] / raw
    resolved = candidate.resolve()
    for root in roots:
        resolved_root = root.resolve()
        if resolved == resolved_root or resolved_root in resolved.parents:
            break
    else:
        raise InvalidInputError(f"{str(path)!r} is outside the allowed roots", field=field)
    if must_exist and not resolved.is_file():
        raise InvalidInputError(f"{str(path)!r} does not exist or is not a file", field=field)
    return resolved
