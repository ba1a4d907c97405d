"""One accumulator per task behind flat ``"<task>/<metric>"`` dicts, and the registry of metric
kinds (``METRICS``) that builds them."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from perception.data.classes import IGNORE_INDEX, class_names
from perception.errors import ConfigError
from perception.evaluation.metrics._array import MetricDict
from perception.evaluation.metrics.depth import DepthMetrics
from perception.evaluation.metrics.lanes import LaneMetrics
from perception.evaluation.metrics.segmentation import DrivableMetrics, SegmentationMetrics
from perception.registry import Registry

__all__ = ["TaskMetric", "MetricSet", "METRICS"]


class TaskMetric(Protocol):
    """What ``MetricSet`` needs from a task accumulator. Keys are relative ("miou")."""

    def update(self, pred: Any, target: Any) -> MetricDict:
        """Accumulate; return the metrics of this call alone (a frame's, when given one frame)."""
        ...

    def compute(self) -> MetricDict:
        """Metrics over everything accumulated since the last reset."""
        ...

    def reset(self) -> None: ...


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
