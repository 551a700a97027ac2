"""Vector arithmetic: L2 normalisation of embedding rows."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["l2_normalise"]


def l2_normalise(rows: NDArray[np.floating]) -> NDArray[np.float32]:
    """Each row scaled to unit L2 norm (an all-zero row stays zero instead of NaN)."""
    matrix = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    divisor = np.where(norms > 0, norms, np.float32(1.0)).astype(np.float32)
    return np.asarray(matrix / divisor, dtype=np.float32)
