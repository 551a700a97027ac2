"""PNG bytes → a decoded RGB image and a small PNG thumbnail (Pillow, no file access)."""

from __future__ import annotations

import base64
import io

from PIL import Image, UnidentifiedImageError

__all__ = ["PNG_SIGNATURE", "NotAPngError", "decode_png", "thumbnail_b64"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Charts are a few megapixels at most; a bigger "PNG" is a decompression bomb, not a chart.
_MAX_PIXELS = 64_000_000
_DECODE_ERRORS = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    SyntaxError,
    ValueError,
)


class NotAPngError(ValueError):
    """The bytes are not a PNG, or not a decodable one."""


def decode_png(data: bytes) -> Image.Image:
    """The image as RGB, fully decoded; :class:`NotAPngError` when it is not a sound PNG."""
    if not data.startswith(PNG_SIGNATURE):
        raise NotAPngError("not a PNG file (bad signature)")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            if image.width * image.height > _MAX_PIXELS:
                raise NotAPngError(f"image too large ({image.width}x{image.height})")
            image.load()
            return image.convert("RGB")
    except _DECODE_ERRORS as exc:
        if isinstance(exc, NotAPngError):
            raise
        raise NotAPngError(f"undecodable PNG: {exc}") from exc


def thumbnail_b64(image: Image.Image, *, max_px: int) -> str:
    """A PNG of ``image`` whose longer side is at most ``max_px``, base64 (ASCII)."""
    thumb = image.copy()
    thumb.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
