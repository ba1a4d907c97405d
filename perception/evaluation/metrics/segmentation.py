"""Label-map tasks: mIoU, accuracies and per-class IoU; drivable area with its binary view."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from perception.data.classes import IGNORE_INDEX
from perception.errors import ConfigError
from perception.evaluation.metrics._array import MetricDict, nan_to_none, nanmean, safe_div
from perception.evaluation.metrics.confusion import (
    ConfusionMatrix,
    accuracy_from_confusion,
    iou_from_confusion,
    merge_classes,
)

__all__ = ["SegmentationMetrics", "DrivableMetrics", "DRIVABLE_NAMES"]


class SegmentationMetrics:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU of a label-map task.

    Keys: ``miou``, ``pixel_acc``, ``mean_acc``, ``iou/<class name>``.
    """

    def __init__(self, names: Sequence[str], ignore_index: int | None = IGNORE_INDEX) -> None:
        if len(set(names)) != len(names):
            raise ConfigError(f"class names must be unique, got {list(names)!r}")
        self.names = tuple(names)
        self.confusion = ConfusionMatrix(len(self.names), ignore_index)

    def update(self, pred: Any, target: Any) -> MetricDict:
        return self._metrics(self.confusion.update(pred, target))

    def compute(self) -> MetricDict:
        return self._metrics(self.confusion.matrix)

    def reset(self) -> None:
        self.confusion.reset()

    def _metrics(self, matrix: np.ndarray) -> MetricDict:
        iou = iou_from_confusion(matrix)
        out: MetricDict = {
            "miou": nan_to_none(nanmean(iou)),
            "pixel_acc": nan_to_none(float(safe_div(np.trace(matrix), matrix.sum()))),
            "mean_acc": nan_to_none(nanmean(accuracy_from_confusion(matrix))),
        }
        out.update({f"iou/{name}": nan_to_none(v) for name, v in zip(self.names, iou, strict=True)})
        return out


DRIVABLE_NAMES = ("background", "direct", "alternative")


class DrivableMetrics(SegmentationMetrics):
    """Drivable area (BDD100K: 0 background, 1 direct, 2 alternative; 255 ignore).

    Adds a binary view with direct and alternative merged into one "drivable" class:
    ``miou_binary`` (background/drivable mIoU) and ``iou_drivable``. Which binary convention a
    published number used depends on its label files; ours is stated in docs/metrics.md.
    """

    def __init__(self, ignore_index: int | None = IGNORE_INDEX) -> None:
        super().__init__(DRIVABLE_NAMES, ignore_index)

    def _metrics(self, matrix: np.ndarray) -> MetricDict:
        out = super()._metrics(matrix)
        binary_iou = iou_from_confusion(merge_classes(matrix, [(0,), (1, 2)]))
        out["miou_binary"] = nan_to_none(nanmean(binary_iou))
        out["iou_drivable"] = nan_to_none(binary_iou[1])
        return out
