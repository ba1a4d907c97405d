"""Lane-line masks, with YOLOP's lane protocol next to the dataset-wide values."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from perception.data.classes import IGNORE_INDEX
from perception.evaluation.metrics._array import (
    MetricDict,
    batch_size,
    nan_to_none,
    nanmean,
    safe_div,
)
from perception.evaluation.metrics.confusion import (
    ConfusionMatrix,
    accuracy_from_confusion,
    iou_from_confusion,
)

__all__ = ["LaneMetrics"]


class LaneMetrics:
    """Lane-line masks (0 background, 1 lane, 255 ignore), with YOLOP's lane protocol.

    YOLOP (hustvl/YOLOP @ bff896e, ``lib/core/evaluate.py`` ``SegmentationMetric`` and
    ``lib/core/function.py`` ``validate``) reports for lanes:

    * "IoU" = ``IntersectionOverUnion()`` = IoU of class 1 (lane), NaN turned into 0;
    * "Acc" = ``lineAccuracy()`` = ``diag / confusion.sum(axis=1)`` of class 1, i.e. lane-pixel
      recall TP / (TP + FN) -- not the overall pixel accuracy, which YOLOP uses for drivable only;
    * both are computed per validation *batch* (``ll_metric.reset()`` before each ``addBatch``) and
      averaged over batches weighted by batch size (``AverageMeter.update(v, img.size(0))``).

    Keys: ``iou`` and ``acc`` use the same formulas on the confusion matrix accumulated over the
    whole dataset (independent of batch size; NaN when undefined); ``iou_yolop`` and
    ``acc_yolop`` reproduce YOLOP's batch-mean numbers when ``update`` is fed the same batches;
    ``miou`` and ``pixel_acc`` are the usual two-class values. YOLOP has no ignore label; pixels
    equal to ``ignore_index`` are skipped here.
    """

    def __init__(self, ignore_index: int | None = IGNORE_INDEX) -> None:
        self.confusion = ConfusionMatrix(2, ignore_index)
        self._yolop_sums = np.zeros(2)  # [sum(iou * b), sum(acc * b)]
        self._yolop_count = 0

    def update(self, pred: Any, target: Any) -> MetricDict:
        counts = self.confusion.update(pred, target)
        out = self._metrics(counts)
        b = batch_size(target.shape)
        self._yolop_sums += b * np.array(self._yolop_values(counts))
        self._yolop_count += b
        out["iou_yolop"], out["acc_yolop"] = self._yolop_values(counts)
        return out

    def compute(self) -> MetricDict:
        out = self._metrics(self.confusion.matrix)
        means = safe_div(self._yolop_sums, self._yolop_count)
        out["iou_yolop"], out["acc_yolop"] = nan_to_none(means[0]), nan_to_none(means[1])
        return out

    def reset(self) -> None:
        self.confusion.reset()
        self._yolop_sums[:] = 0
        self._yolop_count = 0

    @staticmethod
    def _yolop_values(matrix: np.ndarray) -> tuple[float, float]:
        iou = iou_from_confusion(matrix)[1]
        acc = matrix[1, 1] / (matrix[1].sum() + 1e-12)  # YOLOP's lineAccuracy epsilon
        return (0.0 if math.isnan(iou) else float(iou)), float(acc)

    @staticmethod
    def _metrics(matrix: np.ndarray) -> MetricDict:
        iou = iou_from_confusion(matrix)
        return {
            "iou": nan_to_none(iou[1]),
            "acc": nan_to_none(accuracy_from_confusion(matrix)[1]),
            "miou": nan_to_none(nanmean(iou)),
            "pixel_acc": nan_to_none(float(safe_div(np.trace(matrix), matrix.sum()))),
        }
