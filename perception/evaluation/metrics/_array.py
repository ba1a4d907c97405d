"""What every accumulator shares: array-likes (numpy or torch) to numpy, shape checks, and NaN
as "undefined" (``None`` in the flat dicts)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from perception.errors import InputError

__all__ = ["MetricDict", "is_torch", "to_numpy", "check_shapes", "nan_to_none", "nanmean", "safe_div",
           "batch_size"]


MetricDict = dict[str, "float | int | None"]


def is_torch(x: object) -> bool:
    return type(x).__module__.startswith("torch")


def to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like; torch tensors are detached and moved to the CPU."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_shapes(pred_shape: Sequence[int], target_shape: Sequence[int], what: str) -> None:
    if tuple(pred_shape) != tuple(target_shape):
        raise InputError(
            f"{what}: prediction shape {tuple(pred_shape)} != target shape {tuple(target_shape)}; "
            "pass label maps of equal size ([H, W] or [B, H, W]), resized to the label resolution"
        )


def nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den == 0 (no warnings)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def batch_size(shape: Sequence[int]) -> int:
    return int(shape[0]) if len(shape) >= 3 else 1
