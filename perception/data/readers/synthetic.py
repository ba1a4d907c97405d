"""Reader of the synthetic image datasets written by :func:`perception.data.synthetic.write_dataset`."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from perception.data.classes import IGNORE_INDEX
from perception.data.readers.base import SampleDataset, Transform
from perception.data.readers.image_file import read_label, read_rgb
from perception.errors import DataError

__all__ = ["SyntheticDataset", "SYNTHETIC_TASKS"]

SYNTHETIC_TASKS = ("segmentation", "depth", "drivable", "lanes", "lane_instances", "corridor")
_FORMAT = "tadp-synthetic"


class SyntheticDataset(SampleDataset):
    """Samples of a synthetic dataset directory (``dataset.json`` + ``index.jsonl``).

    Args:
        root: the dataset directory.
        tasks: which labels to load (default: all of :data:`SYNTHETIC_TASKS`).
        transform: applied to each sample dict.

    Raises:
        DataError: not a synthetic dataset, unknown version or task names.

    Example:
        >>> ds = SyntheticDataset("synth_train", tasks=("segmentation", "depth"))
        >>> ds[0]["depth"].max()
    """

    source = "synthetic"

    def __init__(self, root: str | Path, tasks: Iterable[str] | None = None,
                 transform: Transform | None = None) -> None:
        self.root = Path(root)
        info_path = self.root / "dataset.json"
        if not info_path.is_file():
            raise DataError(f"{str(self.root)!r} is not a synthetic dataset: {info_path.name} is missing "
                            "(write one with `tadp synth dataset`)")
        try:
            self.info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{str(info_path)!r} is not valid JSON: {err}") from err
        if self.info.get("format") != _FORMAT or self.info.get("version") != 1:
            raise DataError(f"{str(info_path)!r}: expected format {_FORMAT!r} version 1, got "
                            f"{self.info.get('format')!r} version {self.info.get('version')!r}")
        self.tasks = tuple(SYNTHETIC_TASKS if tasks is None else tasks)
        bad = sorted(set(self.tasks) - set(SYNTHETIC_TASKS))
        if bad:
            raise DataError(f"unknown synthetic tasks {bad}; valid: {', '.join(SYNTHETIC_TASKS)}")
        index = self.root / "index.jsonl"
        if not index.is_file():
            raise DataError(f"{str(index)!r} is missing; the dataset is incomplete")
        with open(index, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        super().__init__(records, transform)

    def load(self, record: dict[str, Any]) -> dict[str, Any]:
        files = record["files"]
        sample: dict[str, Any] = {"image": read_rgb(self.root / files["image"])}
        for task in ("segmentation", "drivable", "corridor"):
            if task in self.tasks:
                sample[task] = read_label(self.root / files[task])
        if "lanes" in self.tasks or "lane_instances" in self.tasks:
            inst = read_label(self.root / files["lane_instances"])
            if "lane_instances" in self.tasks:
                sample["lane_instances"] = inst
            if "lanes" in self.tasks:
                lanes = (inst > 0).astype(np.uint8)
                lanes[inst == IGNORE_INDEX] = IGNORE_INDEX
                sample["lanes"] = lanes
        if "depth" in self.tasks:
            path = self.root / files["depth"]
            if path.suffix == ".npy":
                sample["depth"] = np.load(path).astype(np.float32)
            else:
                scale = float(self.info["depth"].get("scale_m", 0.001))
                sample["depth"] = read_label(path).astype(np.float32) * np.float32(scale)
        meta = dict(record.get("meta", {}))
        meta.update(source=self.source, id=record["id"])
        sample["meta"] = meta
        return sample
