"""CamVid, 11-class SegNet version (``<split>/*.png`` with ``<split>annot/*.png``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perception.data.classes import IGNORE_INDEX, camvid_to_synth
from perception.data.readers.base import SampleDataset, Transform
from perception.data.readers.image_file import read_label, read_rgb
from perception.errors import DataError

__all__ = ["CamVidDataset", "CAMVID_CLASSES"]

CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
                  "pedestrian", "bicyclist", "void")
_ROAD, _VOID = 3, 11


class CamVidDataset(SampleDataset):
    """CamVid frames with ``segmentation`` (our classes) and a binary road ``drivable``.

    Raises:
        DataError: the split folders are missing or hold no image/label pair.
    """

    source = "camvid"

    def __init__(self, root: str | Path, split: str = "test", transform: Transform | None = None) -> None:
        root = Path(root)
        img_dir, ann_dir = root / split, root / f"{split}annot"
        if not img_dir.is_dir() or not ann_dir.is_dir():
            raise DataError(f"CamVid split {split!r} not found: need {str(img_dir)!r} and {str(ann_dir)!r}")
        records = [{"id": p.stem, "image": p, "label": ann_dir / p.name}
                   for p in sorted(img_dir.glob("*.png")) if (ann_dir / p.name).is_file()]
        super().__init__(records, transform)

    def load(self, record: dict[str, Any]) -> dict[str, Any]:
        label = read_label(record["label"])
        if label.max() > _VOID:
            raise DataError(f"CamVid {record['id']}: label values must be 0..11, found {int(label.max())}")
        drivable = np.where(label == _ROAD, 1, 0).astype(np.uint8)
        drivable[label == _VOID] = IGNORE_INDEX
        return {
            "image": read_rgb(record["image"]),
            "segmentation": camvid_to_synth(label),
            "drivable": drivable,
            "meta": {"source": self.source, "id": record["id"], "drivable_binary": True},
        }
