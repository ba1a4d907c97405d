"""Shared machinery of the dataset readers: a torch ``Dataset`` over a list of records, with an
optional transform applied to each sample dict."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import Dataset

from perception.errors import DataError

__all__ = ["SampleDataset"]

Transform = Callable[[dict[str, Any]], Any]


class SampleDataset(Dataset):
    """Base class: subclasses fill ``self.records`` and implement ``load(record) -> sample``."""

    source = "unknown"

    def __init__(self, records: Sequence[Any], transform: Transform | None = None) -> None:
        if not records:
            raise DataError(f"{type(self).__name__}: no samples found")
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Any:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} samples")
        sample = self.load(self.records[index])
        return self.transform(sample) if self.transform is not None else sample

    def load(self, record: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError
