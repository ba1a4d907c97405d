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
    lines: list[str] = []
    names = [n for n in depth if model.tasks[n].cfg.focal_px is None]
    if names:
        size = tuple(model.cfg.input_size)
        measured = measure_focal_px(dataset, size[0])
        if measured is None:
            lines += [f"{n}: the training samples carry no intrinsics (meta K); focal_px stays "
                      "unset, so depth will not follow the camera's focal length" for n in names]
        else:
            focal, frames = measured
            for n in names:
                model.update_task(n, focal_px=round(focal, 2))
            lines += [f"{n}: training cameras' focal length {focal:.2f} px at {size[0]}x{size[1]} "
                      f"({frames} frames) -> focal_px" for n in names]
    names = [n for n in depth if model.tasks[n].cfg.height_m is None]
    if names:
        measured = measure_height_m(dataset)
        if measured is None:
            rule = [n for n in names if model.tasks[n].cfg.height_exponent > 0]
            lines += [f"{n}: the training samples carry no mounting (meta mounting); height_m "
                      "stays unset, so depth will not follow the camera's height" for n in rule]
        else:
            height, frames = measured
            for n in names:
                model.update_task(n, height_m=round(height, 3))
            lines += [f"{n}: training cameras' mounting height {height:.3f} m ({frames} frames) "
                      f"-> height_m (height_exponent {model.tasks[n].cfg.height_exponent:g})"
                      for n in names]
    return lines
