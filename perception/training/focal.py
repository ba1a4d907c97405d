"""The training cameras' focal length, recorded with a depth task (``TaskConfig.focal_px``).

A network cannot see the focal length: the runtime and evaluation rescale its depth from a
reference focal length to each camera's (``perception.tasks.depth``), and training scales every
label to that reference (``perception.training.losses``). This measures the reference once, before
training, from the samples' intrinsics: the geometric mean of the vertical focal length at the
network input, so labels move as little as possible.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from perception.data.sample import sample_focal_px
from perception.models.network import MultiTaskNet

__all__ = ["measure_focal_px", "record_focal_px"]


def measure_focal_px(dataset: Any, input_height: int, max_frames: int = 200) -> tuple[float, int] | None:
    """(geometric mean of ``fy`` scaled to ``input_height``, frames used) over up to
    ``max_frames`` evenly spaced samples that carry ``meta["K"]``; None when none does."""
    n = len(dataset)
    logs = []
    for i in np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int)):
        focal = sample_focal_px(dataset[int(i)], input_height)
        if focal is not None:
            logs.append(math.log(focal))
    if not logs:
        return None
    return math.exp(sum(logs) / len(logs)), len(logs)


def record_focal_px(model: MultiTaskNet, dataset: Any, tasks: list[str] | None = None) -> list[str]:
    """Set ``focal_px`` of the model's depth tasks (``tasks``, default all) that have none, from
    ``dataset``; returns one line per task for the log. A model trained further keeps its
    recorded value: its scale was learned at that focal length."""
    names = [n for n in (tasks or model.task_names())
             if model.tasks[n].cfg.kind == "depth" and model.tasks[n].cfg.focal_px is None]
    if not names:
        return []
    size = tuple(model.cfg.input_size)
    measured = measure_focal_px(dataset, size[0])
    if measured is None:
        return [f"{n}: the training samples carry no intrinsics (meta K); focal_px stays unset, "
                "so depth will not follow the camera's focal length" for n in names]
    focal, frames = measured
    for n in names:
        model.update_task(n, focal_px=round(focal, 2))
    return [f"{n}: training cameras' focal length {focal:.2f} px at {size[0]}x{size[1]} "
            f"({frames} frames) -> focal_px" for n in names]
