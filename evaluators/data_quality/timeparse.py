"""Timestamps to epoch seconds: ISO 8601 strings or epoch numbers, nothing else."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

#: seconds per unit, for epoch numbers, gaps and rates
TIME_UNITS: dict[str, float] = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}

_fromiso = datetime.fromisoformat
_EPOCH_NAIVE = datetime(1970, 1, 1)
_isfinite = math.isfinite


def to_seconds(value: Any, epoch_scale: float = 1.0) -> float | None:
    """Epoch seconds of an ISO 8601 string (naive means UTC) or an epoch number; None if neither."""
    t = type(value)
    if t is float or t is int:
        try:
            seconds = value * epoch_scale
        except OverflowError:  # an int too large for a float
            return None
        return seconds if _isfinite(seconds) else None
    if t is str:
        try:
            dt = _fromiso(value)
        except ValueError:
            return None
        if dt.tzinfo is None:  # naive means UTC (and this is 5x faster than replace(tzinfo=...))
            return (dt - _EPOCH_NAIVE).total_seconds()
        return dt.timestamp()
    return None
