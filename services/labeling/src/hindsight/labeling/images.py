"""Chart files: checked when ``png.created`` arrives and again right before serving.

A chart is shown only if its path is sane, lies inside ``HINDSIGHT_IMAGE_ROOTS``, is a
regular file and passes :func:`~hindsight.labeling.domain.pngcheck.check_png_header`.
Serving reads from the same open file that was checked, so a file swapped in between
is never sent as ``image/png``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from hindsight.common.errors import InvalidInputError
from hindsight.common.paths import resolve_in_roots
from hindsight.labeling.domain.pngcheck import (
    HEADER_BYTES,
    NotAPngError,
    PngLimits,
    check_png_header,
)

__all__ = ["MAX_PATH_CHARS", "check_png_file", "iter_file", "open_png"]

MAX_PATH_CHARS = 4096  # PATH_MAX on Linux: a longer path cannot name a file
_CHUNK = 64 * 1024


def _shown(raw: str) -> str:
    # Errors travel in DLQ headers and logs: never echo a megabyte of path.
    return repr(raw if len(raw) <= 200 else raw[:200] + "…")


def open_png(
    raw_path: str, roots: Sequence[Path], limits: PngLimits, *, field: str = "file_path"
) -> tuple[BinaryIO, int]:
    """The opened chart (at offset 0) and its size; :class:`InvalidInputError` naming
    ``field`` when it is not a PNG we show. The caller closes the file (blocking call)."""
    if len(raw_path) > MAX_PATH_CHARS:
        raise InvalidInputError(
            f"path of {len(raw_path)} characters, over the limit of {MAX_PATH_CHARS}", field=field
        )
    if "\x00" in raw_path:
        raise InvalidInputError("path contains a NUL character", field=field)
    try:
        path = resolve_in_roots(raw_path, roots, field=field, must_exist=False)
        # O_NONBLOCK: a FIFO planted under the roots must not hang the reader.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InvalidInputError(
            f"{_shown(raw_path)} cannot be read: {exc.strerror or exc}", field=field
        ) from exc
    fh = os.fdopen(fd, "rb")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInputError(f"{_shown(raw_path)} is not a regular file", field=field)
        try:
            check_png_header(fh.read(HEADER_BYTES), size=info.st_size, limits=limits)
        except NotAPngError as exc:
            raise InvalidInputError(f"{_shown(raw_path)}: {exc}", field=field) from exc
        except OSError as exc:
            raise InvalidInputError(
                f"{_shown(raw_path)} cannot be read: {exc.strerror or exc}", field=field
            ) from exc
        fh.seek(0)
    except BaseException:
        fh.close()
        raise
    return fh, info.st_size


def check_png_file(
    raw_path: str, roots: Sequence[Path], limits: PngLimits, *, field: str = "file_path"
) -> None:
    """Raise :class:`InvalidInputError` unless ``raw_path`` is a chart we would show."""
    fh, _ = open_png(raw_path, roots, limits, field=field)
    fh.close()


def iter_file(fh: BinaryIO, size: int) -> Iterator[bytes]:
    """At most ``size`` bytes of ``fh`` in chunks; closes it when done or abandoned."""
    try:
        left = size
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        fh.close()
