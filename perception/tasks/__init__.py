"""The task-kind index: one registration per kind."""
from __future__ import annotations

from perception.config import TaskConfig
from perception.registry import Registry
from perception.tasks.base import TaskKind
from perception.tasks.dense_extra import Normals, Saliency
from perception.tasks.depth import Depth
from perception.tasks.drivable import Drivable
from perception.tasks.lanes import Lanes
from perception.tasks.mask import Mask
from perception.tasks.segmentation import Segmentation

__all__ = ["TASK_KINDS", "TaskKind", "kind_of"]

TASK_KINDS: Registry[TaskKind] = Registry("task kind")
TASK_KINDS.register("segmentation", Segmentation())
TASK_KINDS.register("depth", Depth())
TASK_KINDS.register("drivable", Drivable())
TASK_KINDS.register("lanes", Lanes())
TASK_KINDS.register("mask", Mask())
TASK_KINDS.register("saliency", Saliency())
TASK_KINDS.register("normals", Normals())


def kind_of(cfg: TaskConfig) -> TaskKind:
    return TASK_KINDS.get(cfg.kind)
