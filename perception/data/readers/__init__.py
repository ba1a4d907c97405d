"""Torch datasets that yield the common sample format (:mod:`perception.data.sample`)."""
from __future__ import annotations

from perception.data.readers.bdd100k import BDD100KDataset, decode_bdd100k_lanes
from perception.data.readers.camvid import CamVidDataset
from perception.data.readers.cityscapes import CityscapesDataset
from perception.data.readers.kitti import KittiDepthDataset
from perception.data.readers.synthetic import SyntheticDataset
from perception.data.readers.tusimple import TuSimpleDataset

__all__ = [
    "SyntheticDataset",
    "BDD100KDataset",
    "CityscapesDataset",
    "CamVidDataset",
    "TuSimpleDataset",
    "KittiDepthDataset",
    "decode_bdd100k_lanes",
]
