"""Confusion matrices of label maps and the per-class IoU and accuracy they give."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from perception.data.classes import IGNORE_INDEX
from perception.errors import ConfigError, InputError
from perception.evaluation.metrics._array import check_shapes, is_torch, nanmean, safe_div, to_numpy

__all__ = ["ConfusionMatrix", "iou_from_confusion", "accuracy_from_confusion", "merge_classes"]


def _confusion_counts(pred: Any, target: Any, num_classes: int, ignore_index: int | None) -> np.ndarray:
    """[C, C] int64 counts of one call; rows = target, columns = prediction.

    Both torch tensors: counted with ``torch.bincount`` on their device (no full-size copy off a
    GPU). Otherwise numpy ``bincount``. Out-of-range ids raise instead of being dropped silently.
    """
    check_shapes(pred.shape, target.shape, "ConfusionMatrix.update")
    n = num_classes
    if is_torch(pred) and is_torch(target):
        import torch

        t = target.reshape(-1).long()
        p = pred.reshape(-1).to(t.device).long()
        keep = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
        t, p = t[keep], p[keep]
        _check_ids(t, p, n, ignore_index, lambda a: torch.unique(a).tolist())
        counts = torch.bincount(t * n + p, minlength=n * n)
        return counts.cpu().numpy().astype(np.int64).reshape(n, n)
    t = to_numpy(target).reshape(-1)
    p = to_numpy(pred).reshape(-1)
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
        if ids.numel() if is_torch(ids) else ids.size:
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
        return nanmean(self.per_class_iou())

    def pixel_accuracy(self) -> float:
        """Correct / counted pixels over all classes; NaN before any pixel was counted."""
        return float(safe_div(np.trace(self._matrix), self._matrix.sum()))

    def class_accuracy(self) -> np.ndarray:
        """[C] recall TP / (TP + FN) per class; NaN for a class absent from the target."""
        return accuracy_from_confusion(self._matrix)


def iou_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """[C] per-class IoU of a [C, C] confusion matrix; NaN where the union is empty."""
    tp = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    return safe_div(tp, union)


def accuracy_from_confusion(matrix: np.ndarray) -> np.ndarray:
    """[C] per-class recall TP / (TP + FN) (rows are ground truth); NaN for empty rows."""
    return safe_div(np.diag(matrix), matrix.sum(axis=1))


def merge_classes(matrix: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Sum rows and columns of a confusion matrix into the given class groups."""
    select = np.zeros((len(groups), matrix.shape[0]), dtype=np.int64)  # [G, C]
    for g, members in enumerate(groups):
        select[g, list(members)] = 1
    return select @ matrix @ select.T
