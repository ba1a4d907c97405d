"""Post-processing turns raw decoder outputs into what consumers read: class ids equal
``argmax`` over channels exactly (first maximum wins, NaN ranks highest) for every channel count."""
from __future__ import annotations

import math

import pytest
import torch

from perception.tasks.base import argmax_ids


@pytest.mark.parametrize("channels", [1, 2, 3, 9, 19])
def test_argmax_ids_equals_argmax(channels: int) -> None:
    g = torch.Generator().manual_seed(channels)
    raw = torch.randn(2, channels, 33, 47, generator=g)
    raw[:, -1, :5] = raw[:, 0, :5]  # ties: the first channel must win
    raw[:, :, 5:8] = 0.0  # all channels tied
    ids = argmax_ids(raw)
    assert ids.dtype == torch.uint8 and ids.shape == (2, 33, 47)
    assert torch.equal(ids, raw.argmax(dim=1).to(torch.uint8))


def test_argmax_ids_ranks_nan_like_argmax() -> None:
    raw = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    raw[0, 2, 0, 0] = float("nan")
    raw[0, 0, 1, 1] = float("nan")
    assert torch.equal(argmax_ids(raw), raw.argmax(dim=1).to(torch.uint8))


def test_argmax_ids_on_a_strided_batch() -> None:
    """Engine outputs can be views (e.g. channels-last from eager convs): same answer."""
    raw = torch.randn(2, 16, 24, 5, generator=torch.Generator().manual_seed(1)).permute(0, 3, 1, 2)
    assert torch.equal(argmax_ids(raw), raw.argmax(dim=1).to(torch.uint8))


def test_depth_follows_the_cameras_focal_length() -> None:
    """Depth is metric at the training cameras' focal length (``focal_px``); a frame from a
    camera with a longer lens (larger focal length) is farther by the ratio, per frame."""
    from perception.config import TaskConfig
    from perception.tasks.depth import Depth

    kind, cfg = Depth(), TaskConfig("depth", "depth", focal_px=200.0, max_depth_m=80.0)
    raw = torch.full((2, 1, 3, 4), math.log(2.0))  # 20 m at the reference 10 m
    assert torch.allclose(kind.postprocess(raw, cfg), torch.full((2, 3, 4), 20.0))
    assert torch.allclose(kind.postprocess(raw, cfg, focal_px=300.0), torch.full((2, 3, 4), 30.0))
    per_frame = kind.postprocess(raw, cfg, focal_px=torch.tensor([100.0, 1000.0]))
    assert torch.allclose(per_frame[0], torch.full((3, 4), 10.0))
    assert torch.allclose(per_frame[1], torch.full((3, 4), 80.0))  # 100 m, clamped to max_depth_m
    unknown = TaskConfig("depth", "depth")  # no recorded focal length: nothing to scale against
    assert torch.equal(kind.postprocess(raw, unknown, focal_px=300.0), kind.postprocess(raw, unknown))


def test_focal_px_must_be_positive() -> None:
    from perception.config import TaskConfig
    from perception.errors import ConfigError

    with pytest.raises(ConfigError, match="task 'depth': focal_px must be > 0, got 0"):
        TaskConfig("depth", "depth", focal_px=0)
