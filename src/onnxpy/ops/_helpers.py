"""Logic shared by kernels of several families: axes, broadcasting, padding arithmetic, dtypes."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def normalize_axis(axis: int, rank: int) -> int:
    """A possibly negative axis as an index in ``[0, rank)``; raises ValueError when out of range."""
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def normalize_axes(axes: Sequence[int] | np.ndarray | None, rank: int) -> tuple[int, ...] | None:
    """Axes as sorted non-negative ints; ``None`` stays ``None`` (meaning all axes)."""
    if axes is None:
        return None
    return tuple(sorted(normalize_axis(int(a), rank) for a in np.asarray(axes).reshape(-1)))


def as_dtype_of(value: Any, like: np.ndarray) -> np.ndarray:
    """``value`` as an array with exactly ``like``'s dtype (no float64 from Python scalars)."""
    return np.asarray(value, dtype=like.dtype)
