"""The training cameras' reference scale, recorded with a depth task: focal length
(``TaskConfig.focal_px``) and mounting height (``TaskConfig.height_m``).

A network sees neither: the runtime and evaluation rescale its depth from the reference to each
camera's (``perception.tasks.depth``), and training scales every label to the reference
(``perception.training.losses``). This measures the reference once, before training, from the
samples' intrinsics and mountings: geometric means (focal length at the network input, height),
so labels move as little as possible. A model trained further keeps its recorded values: its
scale was learned at them.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from perception.data.sample import sample_focal_px, sample_height_m
from perception.models.network import MultiTaskNet

__all__ = ["measure_focal_px", "measure_height_m", "record_camera_reference"]


def _geometric_mean(dataset: Any, value: Callable[[Any], float | None],
                    max_frames: int) -> tuple[float, int] | None:
    n = len(dataset)
    logs = []
    for i in np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int)):
        v = value(dataset[int(i)])
        if v is not None and v > 0:
            logs.append(math.log(v))
    if not logs:
        return None
    return math.exp(sum(logs) / len(logs)), len(logs)


def measure_focal_px(dataset: Any, input_height: int, max_frames: int = 200) -> tuple[float, int] | None:
    """(geometric mean of ``fy`` scaled to ``input_height``, frames used) over up to
    ``max_frames`` evenly spaced samples that carry ``meta["K"]``; None when none does."""
    return _geometric_mean(dataset, lambda s: sample_focal_px(s, input_height), max_frames)


def measure_height_m(dataset: Any, max_frames: int = 200) -> tuple[float, int] | None:
    """(geometric mean of the mounting height, frames used) over up to ``max_frames`` evenly
    spaced samples that carry ``meta["mounting"]``; None when none does."""
    return _geometric_mean(dataset, sample_height_m, max_frames)


def record_camera_reference(model: MultiTaskNet, dataset: Any,
                            tasks: list[str] | None = None) -> list[str]:
    """Set ``focal_px`` and ``height_m`` of the model's depth tasks (``tasks``, default all) that
    have none, from ``dataset``; returns one line per task and value for the log."""
    depth = [n for n in (tasks or model.task_names()) if model.tasks[n].cfg.kind == "depth"]
    h, w = tuple(model.cfg.input_size)
    refs = (  # field, digits, measure, what it is, what the samples lack
        ("focal_px", 2, lambda: measure_focal_px(dataset, h),
         lambda v: f"focal length {v:.2f} px at {h}x{w}", "no intrinsics (meta K)"),
        ("height_m", 3, lambda: measure_height_m(dataset),
         lambda v: f"mounting height {v:.3f} m", "no mounting (meta mounting)"),
    )
    lines: list[str] = []
    for field, digits, measure, what, lack in refs:
        names = [n for n in depth if getattr(model.tasks[n].cfg, field) is None]
        measured = measure() if names else None
        if measured is None:
            # Unset is only worth a line where it matters: focal always, height with its rule.
            lines += [f"{n}: the training samples carry {lack}; {field} stays unset, so depth "
                      f"keeps the training cameras' scale" for n in names
                      if field == "focal_px" or model.tasks[n].cfg.height_exponent > 0]
            continue
        value, frames = measured
        for n in names:
            model.update_task(n, **{field: round(value, digits)})
        lines += [f"{n}: training cameras' {what(value)} ({frames} frames) -> {field}"
                  for n in names]
    return lines
