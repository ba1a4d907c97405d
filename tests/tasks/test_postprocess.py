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


def test_depth_follows_the_cameras_mounting_height() -> None:
    """A model trained with a height rule learned depth at its cameras' mean height
    (``height_m``): a camera mounted higher sees the ground (and what stands on it) farther, by
    ``(h / height_m) ** height_exponent``, per frame and on top of the focal length. Without
    the rule (exponent 0, every model before r11) or without a height, nothing changes."""
    from perception.config import TaskConfig
    from perception.tasks.depth import Depth, camera_scale

    kind = Depth()
    cfg = TaskConfig("depth", "depth", focal_px=200.0, height_m=1.5, height_exponent=1.0)
    raw = torch.full((2, 1, 3, 4), math.log(2.0))  # 20 m at the reference
    assert torch.allclose(kind.postprocess(raw, cfg, height_m=1.2), torch.full((2, 3, 4), 16.0))
    both = kind.postprocess(raw, cfg, focal_px=300.0, height_m=torch.tensor([1.5, 1.8]))
    assert torch.allclose(both[0], torch.full((3, 4), 30.0))
    assert torch.allclose(both[1], torch.full((3, 4), 36.0))
    half = TaskConfig("depth", "depth", height_m=1.5, height_exponent=0.5)
    assert camera_scale(half, None, 6.0) == pytest.approx(2.0)
    off = TaskConfig("depth", "depth", height_m=1.5)  # exponent 0: the height is ignored
    assert torch.equal(kind.postprocess(raw, off, height_m=1.2), kind.postprocess(raw, off))
    unknown = TaskConfig("depth", "depth", height_exponent=1.0)  # no recorded height
    assert torch.equal(kind.postprocess(raw, unknown, height_m=1.2), kind.postprocess(raw, unknown))


def test_height_settings_are_checked() -> None:
    from perception.config import TaskConfig
    from perception.errors import ConfigError

    with pytest.raises(ConfigError, match="task 'depth': height_m must be > 0, got -1"):
        TaskConfig("depth", "depth", height_m=-1)
    with pytest.raises(ConfigError, match=r"task 'depth': height_exponent must be in \[0, 2\], got 3"):
        TaskConfig("depth", "depth", height_exponent=3)


def test_depth_subpixel_upsampling_adds_the_shuffled_residuals() -> None:
    """With ``subpixel`` f the depth decoder has 1 + f*f channels: the bilinear upsampling of
    the first plus, at output pixel (f*i + a, f*j + b), residual channel 1 + f*a + b of pixel
    (i, j). Without it (or with no size: a compiled slot's output) it is plain bilinear."""
    import torch.nn.functional as F

    from perception.config import TaskConfig
    from perception.tasks.depth import Depth

    kind, cfg = Depth(), TaskConfig("depth", "depth", subpixel=2)
    assert kind.channels(cfg) == 5 and kind.channels(TaskConfig("depth", "depth", subpixel=4)) == 17
    raw = torch.zeros(1, 5, 2, 3)
    raw[:, 0] = 0.5
    raw[0, 1:, 1, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # the 2x2 block of pixel (1, 2)
    out = kind.upsample(raw, (4, 6), cfg)
    assert out.shape == (1, 1, 4, 6)
    expect = torch.full((4, 6), 0.5)
    expect[2:4, 4:6] += torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.allclose(out[0, 0], expect)
    assert kind.upsample(raw, None, cfg) is raw
    assert kind.upsample(raw, (5, 7), cfg).shape == (1, 1, 5, 7)  # not a multiple: resized
    plain = TaskConfig("depth", "depth")
    one = torch.randn(2, 1, 3, 4)
    assert torch.equal(kind.upsample(one, (12, 16), plain),
                       F.interpolate(one, size=(12, 16), mode="bilinear", align_corners=False))


def test_subpixel_settings_are_checked() -> None:
    from perception.config import TaskConfig
    from perception.errors import ConfigError

    with pytest.raises(ConfigError, match="task 'depth': subpixel must be 0, 2, 4 or 8, got 3"):
        TaskConfig("depth", "depth", subpixel=3)
    with pytest.raises(ConfigError, match="task 'seg': subpixel is for depth tasks, not 'segmentation'"):
        TaskConfig("seg", "segmentation", subpixel=4)


def test_focal_px_must_be_positive() -> None:
    from perception.config import TaskConfig
    from perception.errors import ConfigError

    with pytest.raises(ConfigError, match="task 'depth': focal_px must be > 0, got 0"):
        TaskConfig("depth", "depth", focal_px=0)
