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

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from perception.data.classes import IGNORE_INDEX, class_names
from perception.errors import ConfigError, InputError
from perception.registry import Registry

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

MetricDict = dict[str, "float | int | None"]


# --------------------------------------------------------------------------------------------
# helpers


def _is_torch(x: object) -> bool:
    return type(x).__module__.startswith("torch")


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like; torch tensors are detached and moved to the CPU."""
    if _is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_shapes(pred_shape: Sequence[int], target_shape: Sequence[int], what: str) -> None:
    if tuple(pred_shape) != tuple(target_shape):
        raise InputError(
            f"{what}: prediction shape {tuple(pred_shape)} != target shape {tuple(target_shape)}; "
            "pass label maps of equal size ([H, W] or [B, H, W]), resized to the label resolution"
        )


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den == 0 (no warnings)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _batch_size(shape: Sequence[int]) -> int:
    return int(shape[0]) if len(shape) >= 3 else 1


# --------------------------------------------------------------------------------------------
# confusion matrix


def _confusion_counts(pred: Any, target: Any, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """[C, C] int64 counts of one call; rows = target, columns = prediction.

    Both torch tensors: counted with ``torch.bincount`` on their device (no full-size copy off a
    GPU). Otherwise numpy ``bincount``. Out-of-range ids raise instead of being dropped silently.
    """
    _check_shapes(pred.shape, target.shape, "ConfusionMatrix.update")
    n = num_classes
    if _is_torch(pred) and _is_torch(target):
        import torch

        t = target.reshape(-1).long()
        p = pred.reshape(-1).to(t.device).long()
        keep = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
        t, p = t[keep], p[keep]
        _check_ids(t, p, n, ignore_index, lambda a: torch.unique(a).tolist())
        counts = torch.bincount(t * n + p, minlength=n * n)
        return counts.cpu().numpy().astype(np.int64).reshape(n, n)
    t = _to_numpy(target).reshape(-1)
    p = _to_numpy(pred).reshape(-1)
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    t = t.astype(np.int64, copy=False)
    p = p.astype(np.int64, copy=False)
    _check_ids(t, p, n, ignore_index, lambda a: np.unique(a).tolist())
    return np.bincount(t * n + p, minlength=n * n).astype(np.int64).reshape(n, n)


def _check_ids(t: Any, p: Any, n: int, ignore_index: int | None,
               unique: Callable[[Any], list[int]]) -> None:
    for name, ids in (("target", t), ("prediction", p)):
        if ids.numel() if _is_torch(ids) else ids.size:
            if int(ids.min()) < 0 or int(ids.max()) >= n:
                bad = [v for v in unique(ids) if v < 0 or v >= n]
                raise InputError(
                    f"{name} contains class ids {bad[:10]} outside 0..{n - 1}"
                    + (f" (ignore index {ignore_index} is skipped)" if ignore_index is not None else "")
                    + "; map unknown labels to the ignore index or fix num_classes"
                )


class ConfusionMatrix:
    """Streaming confusion matrix over label maps.

    ``matrix[i, j]`` counts pixels whose ground truth is class ``i`` and prediction is class ``j``
    (the YOLOP / mmseg convention). Pixels whose *target* equals ``ignore_index`` are skipped;
    any other id outside ``0..num_classes-1`` raises ``InputError``.

    Example:
        >>> cm = ConfusionMatrix(3)
        >>> _ = cm.update(np.array([[0, 1], [2, 2]]), np.array([[0, 1], [1, 255]]))
        >>> cm.per_class_iou().round(2).tolist()
        [1.0, 0.5, 0.0]
    """

    def __init__(self, num_classes: int, ignore_index: int | None = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes!r}")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ConfigError(
                f"ignore_index {ignore_index!r} collides with a class id (num_classes={num_classes})"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """[C, C] int64 counts so far (a copy)."""
        return self._matrix.copy()

    def update(self, pred: Any, target: Any) -> np.ndarray:
        """Add one frame or batch of label maps (numpy or torch, any integer dtype).

        Returns:
            The [C, C] counts of this call alone (for per-frame reports).

        Raises:
            InputError: Shapes differ or ids fall outside the class range.
        """
        counts = _confusion_counts(pred, target, self.num_classes, self.ignore_index)
        self._matrix += counts
        return counts

    def add(self, counts: np.ndarray) -> None:
        """Merge counts from another matrix (e.g. another worker)."""
        counts = np.asarray(counts)
        if counts.shape != self._matrix.shape:
            raise InputError(f"counts shape {counts.shape} != {self._matrix.shape}")
        self._matrix += counts.astype(np.int64)

    def reset(self) -> None:
        self._matrix[:] = 0

    def per_class_iou(self) -> np.ndarray:
        """[C] IoU = TP / (TP + FP + FN); NaN for a class absent from prediction and target."""
        return iou_from_confusion(self._matrix)

    def miou(self) -> float:
        """Mean of the defined per-class IoUs (NaN classes excluded); NaN if none is defined."""
        return _nanmean(self.per_class_iou())

    def pixel_accuracy(self) -> float:
        """Correct / counted pixels over all classes; NaN before any pixel was counted."""
        return float(_safe_div(np.trace(self._matrix), self._matrix.sum()))

    def class_accuracy(self) -> np.ndarray:
        """[C] recall TP / (TP + FN) per class; NaN for a class absent from the target."""
        return accuracy_from_confusion(self._matrix)


def iou_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """[C] per-class IoU of a [C, C] confusion matrix; NaN where the union is empty."""
    tp = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    return _safe_div(tp, union)


def accuracy_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """[C] per-class recall TP / (TP + FN) (rows are ground truth); NaN for empty rows."""
    return _safe_div(np.diag(matrix), matrix.sum(axis=1))


def _merge_classes(matrix: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Sum rows and columns of a confusion matrix into the given class groups."""
    select = np.zeros((len(groups), matrix.shape[0]), dtype=np.int64)  # [G, C]
    for g, members in enumerate(groups):
        select[g, list(members)] = 1
    return select @ matrix @ select.T


# --------------------------------------------------------------------------------------------
# task accumulators


class TaskMetric(Protocol):
    """What ``MetricSet`` needs from a task accumulator. Keys are relative ("miou")."""

    def update(self, pred: Any, target: Any) -> MetricDict:
        """Accumulate; return the metrics of this call alone (a frame's, when given one frame)."""
        ...

    def compute(self) -> MetricDict:
        """Metrics over everything accumulated since the last reset."""
        ...

    def reset(self) -> None: ...


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
            "miou": _nan_to_none(_nanmean(iou)),
            "pixel_acc": _nan_to_none(float(_safe_div(np.trace(matrix), matrix.sum()))),
            "mean_acc": _nan_to_none(_nanmean(accuracy_from_confusion(matrix))),
        }
        out.update({f"iou/{name}": _nan_to_none(v) for name, v in zip(self.names, iou, strict=True)})
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
        binary_iou = iou_from_confusion(_merge_classes(matrix, [(0,), (1, 2)]))
        out["miou_binary"] = _nan_to_none(_nanmean(binary_iou))
        out["iou_drivable"] = _nan_to_none(binary_iou[1])
        return out


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
        b = _batch_size(target.shape)
        self._yolop_sums += b * np.array(self._yolop_values(counts))
        self._yolop_count += b
        out["iou_yolop"], out["acc_yolop"] = self._yolop_values(counts)
        return out

    def compute(self) -> MetricDict:
        out = self._metrics(self.confusion.matrix)
        means = _safe_div(self._yolop_sums, self._yolop_count)
        out["iou_yolop"], out["acc_yolop"] = _nan_to_none(means[0]), _nan_to_none(means[1])
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
            "iou": _nan_to_none(iou[1]),
            "acc": _nan_to_none(accuracy_from_confusion(matrix)[1]),
            "miou": _nan_to_none(_nanmean(iou)),
            "pixel_acc": _nan_to_none(float(_safe_div(np.trace(matrix), matrix.sum()))),
        }


# Column order of DepthMetrics' per-image sums.
_DEPTH_SUMS = ("n", "abs_rel", "sq_rel", "sq", "sq_log", "d1", "d2", "d3")
DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


class DepthMetrics:
    """Metric-depth errors on valid pixels, per the monodepth2 / Eigen et al. protocol.

    Valid pixels: finite ground truth with ``min_depth < gt < max_depth`` (0 = invalid in our
    labels, so it always drops out). Predictions are clipped to ``[min_depth, max_depth]``
    (monodepth2 ``evaluate_depth.py``). Then, over the N valid pixels of an image:
    AbsRel = mean |p-g|/g, SqRel = mean (p-g)^2/g, RMSE = sqrt(mean (p-g)^2),
    RMSE-log = sqrt(mean (ln p - ln g)^2), delta_k = fraction with max(p/g, g/p) < 1.25^k.

    ``reduction="image"`` (default, the KITTI/Eigen convention) computes these per image and
    averages over images that have valid pixels; ``"pixel"`` pools all valid pixels of the
    dataset. Both are exact under streaming. Depth maps may be [H, W], [B, H, W] or [B, 1, H, W],
    in metres. Non-finite predictions propagate NaN. Extra key ``valid_px``: valid pixels counted.
    """

    def __init__(self, min_depth: float = 1e-3, max_depth: float | None = 80.0,
                 reduction: str = "image") -> None:
        if min_depth <= 0:
            raise ConfigError(f"min_depth must be > 0 (log and ratios need it), got {min_depth!r}")
        if max_depth is not None and max_depth <= min_depth:
            raise ConfigError(f"max_depth {max_depth!r} must exceed min_depth {min_depth!r}")
        if reduction not in ("image", "pixel"):
            raise ConfigError(f"reduction must be 'image' or 'pixel', got {reduction!r}")
        self.min_depth = float(min_depth)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.reduction = reduction
        self._rows: list[np.ndarray] = []  # one [len(_DEPTH_SUMS)] row per image

    def update(self, pred: Any, target: Any) -> MetricDict:
        rows = self._image_sums(pred, target)
        self._rows.extend(rows)
        return self._metrics(np.stack(rows))

    def compute(self) -> MetricDict:
        rows = np.stack(self._rows) if self._rows else np.zeros((0, len(_DEPTH_SUMS)))
        return self._metrics(rows)

    def reset(self) -> None:
        self._rows.clear()

    def _image_sums(self, pred: Any, target: Any) -> list[np.ndarray]:
        p_all = _to_numpy(pred).astype(np.float64, copy=False)
        g_all = _to_numpy(target).astype(np.float64, copy=False)
        _check_shapes(p_all.shape, g_all.shape, "DepthMetrics.update")
        if p_all.ndim == 2:
            p_all, g_all = p_all[None], g_all[None]
        elif p_all.ndim == 4 and p_all.shape[1] == 1:
            p_all, g_all = p_all[:, 0], g_all[:, 0]
        elif p_all.ndim != 3:
            raise InputError(
                f"depth maps must be [H, W], [B, H, W] or [B, 1, H, W], got shape {p_all.shape}"
            )
        rows = []
        for p, g in zip(p_all, g_all, strict=True):
            valid = np.isfinite(g) & (g > self.min_depth)
            if self.max_depth is not None:
                valid &= g < self.max_depth
            g = g[valid]
            p = np.clip(p[valid], self.min_depth, self.max_depth)
            err = p - g
            ratio = np.maximum(p / g, g / p)
            rows.append(np.array([
                g.size,
                np.sum(np.abs(err) / g),
                np.sum(err**2 / g),
                np.sum(err**2),
                np.sum((np.log(p) - np.log(g)) ** 2),
                np.sum(ratio < 1.25),
                np.sum(ratio < 1.25**2),
                np.sum(ratio < 1.25**3),
            ], dtype=np.float64))
        return rows

    def _metrics(self, rows: np.ndarray) -> MetricDict:
        valid_px = int(rows[:, 0].sum())
        if self.reduction == "pixel":
            rows = rows.sum(axis=0, keepdims=True)
        rows = rows[rows[:, 0] > 0]  # images without valid pixels are skipped
        if rows.shape[0]:
            mean = rows[:, 1:] / rows[:, :1]  # [I, 7]: abs_rel, sq_rel, mse, msle, d1, d2, d3
            mean[:, 2:4] = np.sqrt(mean[:, 2:4])  # root per image (or once when pooled)
            values = mean.mean(axis=0)
        else:
            values = np.full(len(DEPTH_KEYS), np.nan)
        out: MetricDict = {k: _nan_to_none(float(v)) for k, v in zip(DEPTH_KEYS, values, strict=True)}
        out["valid_px"] = valid_px
        return out


# --------------------------------------------------------------------------------------------
# Delta-m

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


# --------------------------------------------------------------------------------------------
# registry and metric set

METRICS: Registry[Callable[..., TaskMetric]] = Registry("metric kind")


class MetricSet:
    """One accumulator per task, returning flat ``"<task>/<metric>"`` dicts.

    Example:
        >>> ms = MetricSet({"segmentation": "segmentation", "depth": {"kind": "depth",
        ...                 "max_depth": 50.0}})
        >>> frame = ms.update(preds, targets)   # this frame's metrics, also accumulated
        >>> summary = ms.compute()              # {"segmentation/miou": ..., "depth/rmse": ...}

    Args:
        tasks: Task name -> metric kind (a ``METRICS`` key), or -> ``{"kind": ..., **options}``
            with options for the kind's factory (e.g. ``names``, ``ignore_index``,
            ``min_depth``, ``max_depth``, ``reduction``).

    Raises:
        RegistryError: Unknown kind. ConfigError: Bad options.
    """

    def __init__(self, tasks: Mapping[str, str | Mapping[str, Any]]) -> None:
        self._metrics: dict[str, TaskMetric] = {}
        for task, spec in tasks.items():
            if isinstance(spec, str):
                kind, options = spec, {}
            else:
                options = dict(spec)
                if "kind" not in options:
                    raise ConfigError(f"metric spec of task {task!r} needs a 'kind': {spec!r}")
                kind = options.pop("kind")
            factory = METRICS.get(kind)
            try:
                self._metrics[task] = factory(**options)
            except TypeError as err:
                raise ConfigError(f"bad options {options!r} for metric kind {kind!r}: {err}") from err

    @property
    def tasks(self) -> list[str]:
        return list(self._metrics)

    def __getitem__(self, task: str) -> TaskMetric:
        return self._metrics[task]

    def update(self, preds: Mapping[str, Any], targets: Mapping[str, Any]) -> MetricDict:
        """Accumulate every task present in both mappings; others are skipped (a frame may lack
        ground truth for a task).

        Returns:
            Flat metrics of this call alone; one call per frame gives per-frame rows for replay.
        """
        out: MetricDict = {}
        for task, metric in self._metrics.items():
            if task in preds and task in targets:
                for key, value in metric.update(preds[task], targets[task]).items():
                    out[f"{task}/{key}"] = value
        return out

    def compute(self) -> MetricDict:
        """Flat metrics over everything accumulated (JSON-able: NaN is ``None``)."""
        out: MetricDict = {}
        for task, metric in self._metrics.items():
            for key, value in metric.compute().items():
                out[f"{task}/{key}"] = value
        return out

    def reset(self) -> None:
        for metric in self._metrics.values():
            metric.reset()


def _segmentation(names: Sequence[str] | None = None,
                  ignore_index: int | None = IGNORE_INDEX) -> SegmentationMetrics:
    return SegmentationMetrics(class_names() if names is None else names, ignore_index)


def _binary_mask(names: Sequence[str] = ("background", "foreground"),
                 ignore_index: int | None = IGNORE_INDEX) -> SegmentationMetrics:
    if len(names) != 2:
        raise ConfigError(f"a binary mask has 2 class names, got {list(names)!r}")
    return SegmentationMetrics(names, ignore_index)


METRICS.register("segmentation", _segmentation)
METRICS.register("drivable", DrivableMetrics)
METRICS.register("lanes", LaneMetrics)
METRICS.register("depth", DepthMetrics)
METRICS.register("binary_mask", _binary_mask)
METRICS.register(
    "corridor", lambda ignore_index=IGNORE_INDEX: _binary_mask(("background", "corridor"), ignore_index)
)
