"""Is it a PNG we will show? Signature, size and IHDR dimensions, parsed by hand (no I/O).

Only the first 33 bytes are needed (signature + the IHDR chunk), so a decompression
bomb is refused from its header without decoding a pixel.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["HEADER_BYTES", "PNG_SIGNATURE", "NotAPngError", "PngLimits", "check_png_header"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Signature (8) + IHDR length (4) + type (4) + width (4) + height (4) + 5 bytes + CRC (4).
HEADER_BYTES = 33
_MAX_DIMENSION = 2**31 - 1  # the PNG spec's bound on width and height


class NotAPngError(ValueError):
    """The bytes are not a PNG within the limits; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PngLimits:
    """Largest file and image accepted."""

    max_bytes: int
    max_pixels: int


def check_png_header(head: bytes, *, size: int, limits: PngLimits) -> tuple[int, int]:
    """(width, height) of a PNG whose first bytes are ``head`` and length is ``size``.

    Raises :class:`NotAPngError` for an empty or oversized file, a wrong signature, a
    first chunk that is not a well-formed IHDR, or more pixels than ``limits`` allow.
    """
    if size == 0:
        raise NotAPngError("empty file")
    if size > limits.max_bytes:
        raise NotAPngError(f"{size} bytes, over the limit of {limits.max_bytes}")
    if not head.startswith(PNG_SIGNATURE):
        raise NotAPngError("not a PNG file (bad signature)")
    if len(head) < HEADER_BYTES:
        raise NotAPngError("truncated PNG (no complete IHDR chunk)")
    length, kind, width, height = struct.unpack(">I4sII", head[8:24])
    if kind != b"IHDR" or length != 13:
        raise NotAPngError("malformed PNG (the first chunk is not IHDR)")
    if not (0 < width <= _MAX_DIMENSION and 0 < height <= _MAX_DIMENSION):
        raise NotAPngError(f"malformed PNG (width {width}, height {height})")
    if width * height > limits.max_pixels:
        raise NotAPngError(
            f"{width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}"
        )
    return width, height
