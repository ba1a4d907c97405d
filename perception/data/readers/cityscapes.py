"""Cityscapes ``gtFine`` semantic labels (labelIds or trainIds); road gives a drivable mask."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perception.data.classes import IGNORE_INDEX, cityscapes_trainid_to_synth
from perception.data.readers.base import SampleDataset, Transform
from perception.data.readers.image_file import read_label, read_rgb
from perception.errors import DataError

__all__ = ["CityscapesDataset", "cityscapes_labelid_to_trainid", "road_to_drivable"]

# Cityscapes labelId -> trainId (cityscapesScripts labels.py); everything else is 255.
_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
             26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def cityscapes_labelid_to_trainid(label: np.ndarray) -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label_id, train_id in _TRAIN_ID.items():
        lut[label_id] = train_id
    return lut[label]


def road_to_drivable(train_ids: np.ndarray) -> np.ndarray:
    """Binary drivable (1 road, 0 other, 255 ignore) from a trainId map (road = 0)."""
    out = np.where(train_ids == 0, 1, 0).astype(np.uint8)
    out[train_ids == IGNORE_INDEX] = IGNORE_INDEX
    return out


class CityscapesDataset(SampleDataset):
    """``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/<split>/<city>/*_gtFine_*``.

    Uses ``*_labelIds.png`` when present (mapped through the official labelId -> trainId table),
    else ``*_labelTrainIds.png``. Samples carry ``segmentation`` (our classes) and a binary
    ``drivable`` (road; ``meta["drivable_binary"] = True``).

    Raises:
        DataError: no image with a label under ``root/leftImg8bit/<split>``.
    """

    source = "cityscapes"

    def __init__(self, root: str | Path, split: str = "val", transform: Transform | None = None) -> None:
        root = Path(root)
        img_dir = root / "leftImg8bit" / split
        if not img_dir.is_dir():
            raise DataError(f"Cityscapes images not found: {str(img_dir)!r} (expected leftImg8bit/{split}/<city>/)")
        records = []
        for img in sorted(img_dir.glob("*/*_leftImg8bit.png")):
            base = img.name[: -len("_leftImg8bit.png")]
            gt = root / "gtFine" / split / img.parent.name
            label_ids = gt / f"{base}_gtFine_labelIds.png"
            train_ids = gt / f"{base}_gtFine_labelTrainIds.png"
            if label_ids.is_file():
                records.append({"id": base, "image": img, "label": label_ids, "kind": "labelIds"})
            elif train_ids.is_file():
                records.append({"id": base, "image": img, "label": train_ids, "kind": "trainIds"})
        super().__init__(records, transform)

    def load(self, record: dict[str, Any]) -> dict[str, Any]:
        label = read_label(record["label"])
        train = cityscapes_labelid_to_trainid(label) if record["kind"] == "labelIds" else label
        image = read_rgb(record["image"])
        if image.shape[:2] != train.shape:
            raise DataError(f"Cityscapes {record['id']}: label {train.shape} does not match image {image.shape[:2]}")
        return {
            "image": image,
            "segmentation": cityscapes_trainid_to_synth(train),
            "drivable": road_to_drivable(train),
            "meta": {"source": self.source, "id": record["id"], "drivable_binary": True},
        }
