"""The common sample format shared by every dataset reader, the trainer, evaluation and replay.

A sample is a plain dict (numpy arrays, so readers need no torch):

==================  ==================  =========================================================
key                 array               meaning
==================  ==================  =========================================================
``image``           uint8 [H, W, 3]     RGB
``segmentation``    uint8 [H, W]        class ids of :mod:`perception.data.classes`, 255 ignore
``depth``           float32 [H, W]      metres (z-depth), 0 = invalid (sky, no LiDAR return)
``drivable``        uint8 [H, W]        0 background, 1 direct (ego lane), 2 alternative, 255 ignore
``lanes``           uint8 [H, W]        0/1 lane-line mask, 255 ignore
``lane_instances``  uint8 [H, W]        0 background, 1..n lines (left to right), 255 ignore
``corridor``        uint8 [H, W]        0/1 ego corridor up to the first obstacle, 255 ignore
``meta``            dict                ``source``, ``id``, ``K`` (3x3 list) if known, ``stamp_ns``...
==================  ==================  =========================================================

Tasks a dataset does not label are simply absent. BDD100K's own drivable encoding (0 direct,
1 alternative, 2 background) differs from ours; its reader converts. ``meta["drivable_binary"]``
is True where a dataset only knows drivable vs not (Cityscapes/CamVid road): there, 1 means
"drivable" and evaluation should merge classes 1 and 2.

Geometric transforms (:func:`resize_sample`, :func:`crop_sample`, :func:`hflip_sample`) keep all
labels aligned: nearest neighbour for ids, masks and depth (interpolating depth across an object
edge would invent surfaces), area/linear for the image, and update ``meta["K"]``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from perception.data.classes import IGNORE_INDEX
from perception.errors import DataError

__all__ = [
    "TASK_KEYS",
    "LABEL_KEYS",
    "IGNORE_INDEX",
    "DRIVABLE_BACKGROUND",
    "DRIVABLE_DIRECT",
    "DRIVABLE_ALTERNATIVE",
    "validate_sample",
    "sample_focal_px",
    "sample_height_m",
    "resize_sample",
    "crop_sample",
    "hflip_sample",
    "to_tensors",
    "collate",
]

DRIVABLE_BACKGROUND, DRIVABLE_DIRECT, DRIVABLE_ALTERNATIVE = 0, 1, 2
LABEL_KEYS: tuple[str, ...] = ("segmentation", "drivable", "lanes", "lane_instances", "corridor")
TASK_KEYS: tuple[str, ...] = ("segmentation", "depth", "drivable", "lanes", "lane_instances", "corridor")
_FILL = {"segmentation": IGNORE_INDEX, "drivable": IGNORE_INDEX, "lanes": IGNORE_INDEX,
         "lane_instances": IGNORE_INDEX, "corridor": IGNORE_INDEX, "depth": 0.0}


def validate_sample(sample: Mapping[str, Any]) -> None:
    """Check keys, dtypes and shapes of a sample.

    Raises:
        DataError: naming the key, what it has and what it should have.
    """
    if "image" not in sample:
        raise DataError(f"sample has no 'image'; keys: {sorted(sample)}")
    image = sample["image"]
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"sample['image'] must be uint8 [H, W, 3] RGB, got {_describe(image)}")
    hw = image.shape[:2]
    unknown = set(sample) - set(TASK_KEYS) - {"image", "meta"}
    if unknown:
        raise DataError(f"sample has unknown keys {sorted(unknown)}; valid: image, meta, {', '.join(TASK_KEYS)}")
    for key in TASK_KEYS:
        if key not in sample:
            continue
        arr = sample[key]
        want = np.float32 if key == "depth" else np.uint8
        if not isinstance(arr, np.ndarray) or arr.dtype != want or arr.shape != hw:
            raise DataError(f"sample[{key!r}] must be {np.dtype(want).name} {list(hw)}, got {_describe(arr)}")
    if "meta" in sample and not isinstance(sample["meta"], Mapping):
        raise DataError(f"sample['meta'] must be a dict, got {type(sample['meta']).__name__}")


def _describe(arr: Any) -> str:
    if isinstance(arr, np.ndarray):
        return f"{arr.dtype} {list(arr.shape)}"
    return type(arr).__name__


def _scale_K(meta: dict[str, Any], A: np.ndarray) -> None:
    if "K" in meta and meta["K"] is not None:
        meta["K"] = (A @ np.asarray(meta["K"], float)).tolist()


def sample_focal_px(sample: Mapping[str, Any], height: int) -> float | None:
    """The vertical focal length of a sample's camera once its image is resized to ``height``
    rows (e.g. the network input), from ``meta["K"]``; None without ``K``."""
    K = (sample.get("meta") or {}).get("K")
    if K is None:
        return None
    return float(K[1][1]) * height / sample["image"].shape[0]


def sample_height_m(sample: Mapping[str, Any]) -> float | None:
    """The mounting height (m) of a sample's camera above the ground, from
    ``meta["mounting"]["z_m"]`` (the synthetic world and the calibration files' extrinsics);
    None when the sample has no mounting."""
    mounting = (sample.get("meta") or {}).get("mounting")
    if not mounting or mounting.get("z_m") is None:
        return None
    return float(mounting["z_m"])


def resize_sample(sample: Mapping[str, Any], height: int, width: int) -> dict[str, Any]:
    """Resize every array to ``height x width``; ``meta["K"]`` follows (cv2's half-pixel rule)."""
    h0, w0 = sample["image"].shape[:2]
    out: dict[str, Any] = {}
    shrink = height < h0 and width < w0
    out["image"] = cv2.resize(sample["image"], (width, height),
                              interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    for key in TASK_KEYS:
        if key in sample:
            out[key] = cv2.resize(sample[key], (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    meta = dict(sample.get("meta", {}))
    sx, sy = width / w0, height / h0
    _scale_K(meta, np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]]))
    out["meta"] = meta
    return out


def crop_sample(sample: Mapping[str, Any], top: int, left: int, height: int, width: int) -> dict[str, Any]:
    """``array[top:top + height, left:left + width]`` for every array; ``K`` shifts accordingly.

    Raises:
        DataError: the window is not inside the image.
    """
    h0, w0 = sample["image"].shape[:2]
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > h0 or left + width > w0:
        raise DataError(f"crop window top={top}, left={left}, {height}x{width} is not inside the {h0}x{w0} image")
    out: dict[str, Any] = {"image": np.ascontiguousarray(sample["image"][top:top + height, left:left + width])}
    for key in TASK_KEYS:
        if key in sample:
            out[key] = np.ascontiguousarray(sample[key][top:top + height, left:left + width])
    meta = dict(sample.get("meta", {}))
    _scale_K(meta, np.array([[1.0, 0, -left], [0, 1.0, -top], [0, 0, 1]]))
    out["meta"] = meta
    return out


def hflip_sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Mirror left-right. Lane instances are renumbered so 1..n still run left to right;
    vehicle-frame lane polylines in ``meta`` are mirrored (y -> -y) and ``meta["flipped"]`` set.
    (A mirrored right-hand-traffic scene looks like left-hand traffic; that is intended.)"""
    w0 = sample["image"].shape[1]
    out: dict[str, Any] = {"image": np.ascontiguousarray(sample["image"][:, ::-1])}
    for key in TASK_KEYS:
        if key in sample:
            out[key] = np.ascontiguousarray(sample[key][:, ::-1])
    if "lane_instances" in out:
        inst = out["lane_instances"]
        ids = np.unique(inst[(inst > 0) & (inst != IGNORE_INDEX)])
        if ids.size:
            lut = np.arange(256, dtype=np.uint8)
            n = int(ids.max())
            lut[1:n + 1] = np.arange(n, 0, -1)
            out["lane_instances"] = lut[inst]
    meta = dict(sample.get("meta", {}))
    _scale_K(meta, np.array([[-1.0, 0, w0 - 1], [0, 1.0, 0], [0, 0, 1]]))
    if meta.get("K") is not None:
        meta["K"][0][0] = -meta["K"][0][0]  # keep fx positive: x' = (w - 1) - x mirrors the scene
    if "lane_polylines" in meta:
        meta["lane_polylines"] = [[[p[0], -p[1], p[2]] for p in line] for line in reversed(meta["lane_polylines"])]
    meta["flipped"] = not meta.get("flipped", False)
    out["meta"] = meta
    return out


def to_tensors(sample: Mapping[str, Any]) -> dict[str, Any]:
    """Torch tensors for training: ``image`` float32 [3, H, W] in 0..1, ids/masks int64 [H, W],
    ``depth`` float32 [H, W]; ``meta`` is passed through."""
    import torch  # local import: readers and the synthetic world need no torch

    out: dict[str, Any] = {
        "image": torch.from_numpy(np.ascontiguousarray(sample["image"].transpose(2, 0, 1))).float().div_(255.0)
    }
    for key in TASK_KEYS:
        if key in sample:
            arr = np.ascontiguousarray(sample[key])
            out[key] = torch.from_numpy(arr).float() if key == "depth" else torch.from_numpy(arr).long()
    out["meta"] = sample.get("meta", {})
    return out


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch samples (numpy or already tensors) into ``[B, ...]`` tensors.

    A task present in some samples only is filled with "ignore" (255, depth 0) in the others,
    so datasets that label different tasks can share a batch. ``meta`` becomes a list.

    Raises:
        DataError: empty batch or images of different sizes.
    """
    import torch

    if not samples:
        raise DataError("collate: empty batch")
    tensors = [s if isinstance(s.get("image"), torch.Tensor) else to_tensors(s) for s in samples]
    shapes = {tuple(t["image"].shape) for t in tensors}
    if len(shapes) != 1:
        raise DataError(f"collate: images differ in size {sorted(shapes)}; resize or crop them first")
    h, w = tensors[0]["image"].shape[-2:]
    batch: dict[str, Any] = {"image": torch.stack([t["image"] for t in tensors])}
    for key in TASK_KEYS:
        if not any(key in t for t in tensors):
            continue
        fill = _FILL[key]
        parts = []
        for t in tensors:
            if key in t:
                parts.append(t[key])
            elif key == "depth":
                parts.append(torch.full((h, w), float(fill)))
            else:
                parts.append(torch.full((h, w), int(fill), dtype=torch.long))
        batch[key] = torch.stack(parts)
    batch["meta"] = [t.get("meta", {}) for t in tensors]
    return batch
