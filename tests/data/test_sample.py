"""The common sample format: validation, label-consistent resize/crop/flip, tensors and collate."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from perception.data.sample import (
    collate,
    crop_sample,
    hflip_sample,
    resize_sample,
    to_tensors,
    validate_sample,
)
from perception.errors import DataError


def _sample(h: int = 64, w: int = 128) -> dict:
    rng = np.random.default_rng(0)
    inst = np.zeros((h, w), np.uint8)
    inst[:, 20:23], inst[:, 90:93] = 1, 2
    return {
        "image": rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
        "segmentation": rng.integers(0, 9, (h, w), dtype=np.uint8),
        "depth": rng.uniform(1, 50, (h, w)).astype(np.float32),
        "lane_instances": inst,
        "lanes": (inst > 0).astype(np.uint8),
        "meta": {"K": [[60.0, 0.0, 60.0], [0.0, 60.0, 31.5], [0.0, 0.0, 1.0]],
                 "lane_polylines": [[[5.0, 1.5, 0.0]], [[5.0, -1.5, 0.0]]]},
    }


def test_validate_catches_wrong_dtype_and_shape() -> None:
    s = _sample()
    validate_sample(s)
    with pytest.raises(DataError, match="depth"):
        validate_sample({**s, "depth": s["depth"].astype(np.float64)})
    with pytest.raises(DataError, match="segmentation"):
        validate_sample({**s, "segmentation": s["segmentation"][:10]})
    with pytest.raises(DataError, match="unknown keys"):
        validate_sample({**s, "normals": s["depth"]})


def test_resize_uses_nearest_for_labels_and_depth_and_scales_K() -> None:
    s = _sample()
    out = resize_sample(s, 32, 64)
    validate_sample(out)
    assert set(np.unique(out["segmentation"])) <= set(np.unique(s["segmentation"]))
    assert np.isin(out["depth"], s["depth"]).all()  # no interpolated depths
    assert out["meta"]["K"][0][0] == pytest.approx(30.0) and out["meta"]["K"][0][2] == pytest.approx(29.75)


def test_crop_shifts_K_and_checks_the_window() -> None:
    s = _sample()
    out = crop_sample(s, 8, 16, 32, 64)
    assert out["image"].shape == (32, 64, 3) and out["meta"]["K"][0][2] == pytest.approx(44.0)
    assert np.array_equal(out["depth"], s["depth"][8:40, 16:80])
    with pytest.raises(DataError, match="not inside"):
        crop_sample(s, 40, 0, 32, 64)


def test_hflip_keeps_lane_instances_left_to_right() -> None:
    s = _sample()
    out = hflip_sample(s)
    cols = [np.nonzero(out["lane_instances"][0] == i)[0].mean() for i in (1, 2)]
    assert cols[0] < cols[1]
    assert out["meta"]["K"][0][0] == 60.0 and out["meta"]["K"][0][2] == pytest.approx(67.0)
    assert out["meta"]["lane_polylines"][0][0][1] == 1.5 and out["meta"]["flipped"]


def test_collate_fills_missing_tasks_with_ignore() -> None:
    a = _sample()
    b = {k: v for k, v in _sample().items() if k not in ("depth", "lanes", "lane_instances")}
    batch = collate([a, b])
    assert batch["image"].shape == (2, 3, 64, 128) and batch["image"].dtype == torch.float32
    assert batch["segmentation"].dtype == torch.long
    assert torch.all(batch["depth"][1] == 0) and torch.all(batch["lanes"][1] == 255)
    assert len(batch["meta"]) == 2
    assert to_tensors(a)["image"].max() <= 1.0
    with pytest.raises(DataError, match="differ in size"):
        collate([a, resize_sample(b, 32, 64)])
