"""Delta-m: a multi-task model against single-task baselines (TADFormer, CVPR 2025, Eq. 6), and
which direction each metric improves in."""
from __future__ import annotations

import math
from collections.abc import Mapping

from perception.errors import ConfigError

__all__ = ["delta_m", "lower_is_better"]


# Direction of each metric name (the last path component, or "iou" for "iou/<class>").
_LOWER_IS_BETTER = frozenset({"abs_rel", "sq_rel", "rmse", "rmse_log"})
_HIGHER_IS_BETTER = frozenset({
    "miou", "pixel_acc", "mean_acc", "iou", "acc", "miou_binary", "iou_drivable",
    "iou_yolop", "acc_yolop", "delta1", "delta2", "delta3",
})


def lower_is_better(key: str) -> bool:
    """Whether a (flat) metric key improves downwards, e.g. ``"depth/rmse"`` -> True.

    Raises:
        ConfigError: The metric name is not one this module defines.
    """
    parts = key.split("/")
    name = "iou" if len(parts) >= 2 and parts[-2] == "iou" else parts[-1]
    if name in _LOWER_IS_BETTER:
        return True
    if name in _HIGHER_IS_BETTER:
        return False
    raise ConfigError(
        f"unknown direction for metric {key!r}; known lower-is-better: "
        f"{sorted(_LOWER_IS_BETTER)}, higher-is-better: {sorted(_HIGHER_IS_BETTER)}. "
        "Pass lower_is_better={key: True/False} explicitly"
    )


def delta_m(results: Mapping[str, float], baselines: Mapping[str, float],
            directions: Mapping[str, bool] | None = None) -> float:
    """Average relative gain of a multi-task model over single-task baselines, in percent.

    TADFormer (CVPR 2025) Eq. 6: ``Δm = (1/T) Σ_t (-1)^{l_t} (M_t - M_st,t) / M_st,t``, with
    ``l_t = 1`` when lower is better; reported x100. Each key of ``results`` is one term ``t``;
    pass one primary metric per task to match the paper (e.g. ``segmentation/miou`` and
    ``depth/rmse``). Positive = the multi-task model is better on average.

    Args:
        results: Metric values of the evaluated model, keyed like ``MetricSet`` keys.
        baselines: Single-task baseline values for the same keys.
        directions: Optional ``{key: lower_is_better}`` overrides; otherwise from the key name.

    Raises:
        ConfigError: No keys, a key without baseline, a zero/None/NaN value, unknown direction.
    """
    if not results:
        raise ConfigError("delta_m needs at least one metric")
    if missing := sorted(set(results) - set(baselines)):
        raise ConfigError(f"delta_m: no baseline for {missing}; baselines have {sorted(baselines)}")
    directions = directions or {}
    terms = []
    for key, value in results.items():
        base = baselines[key]
        if value is None or base is None or math.isnan(value) or math.isnan(base) or base == 0:
            raise ConfigError(
                f"delta_m: {key!r} needs a finite value and a non-zero baseline, "
                f"got value={value!r}, baseline={base!r}"
            )
        lower = directions[key] if key in directions else lower_is_better(key)
        sign = -1.0 if lower else 1.0
        terms.append(sign * (value - base) / base)
    return 100.0 * sum(terms) / len(terms)
