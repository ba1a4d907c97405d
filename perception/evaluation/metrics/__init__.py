"""Streaming evaluation metrics for the perception tasks (issue 5, item 1).

One accumulator per task kind, fed frame by frame (or batch by batch) and read at the end:

* segmentation-style tasks: a confusion matrix (rows = ground truth, columns = prediction) with an
  ignore index; per-class IoU, mIoU, pixel accuracy;
* depth: AbsRel, SqRel, RMSE, RMSE-log and the delta < 1.25^k accuracies on valid pixels, with the
  min/max depth caps of the monodepth2 / Eigen protocol;
* lanes: IoU and "Acc" of the lane class as YOLOP reports them;
* Delta-m of a multi-task model against single-task baselines (TADFormer, CVPR 2025, Eq. 6).

``MetricSet`` bundles one accumulator per task, keyed by task kind through ``METRICS``, and returns
flat JSON-able dicts such as ``{"segmentation/miou": 0.71, "depth/abs_rel": 0.09}``; the trainer,
``tadp eval`` and bag replay share it. Undefined values (a class absent from both prediction and
ground truth, a frame without valid depth) are NaN in arrays and ``None`` in the flat dicts; means
skip them. Definitions and conventions: docs/metrics.md.
"""
from __future__ import annotations

from perception.evaluation.metrics.confusion import ConfusionMatrix
from perception.evaluation.metrics.depth import DepthMetrics
from perception.evaluation.metrics.lanes import LaneMetrics
from perception.evaluation.metrics.metric_set import METRICS, MetricSet, TaskMetric
from perception.evaluation.metrics.multitask import delta_m, lower_is_better
from perception.evaluation.metrics.segmentation import DrivableMetrics, SegmentationMetrics

__all__ = [
    "ConfusionMatrix",
    "SegmentationMetrics",
    "DrivableMetrics",
    "LaneMetrics",
    "DepthMetrics",
    "TaskMetric",
    "MetricSet",
    "METRICS",
    "delta_m",
    "lower_is_better",
]
