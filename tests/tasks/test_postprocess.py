"""Post-processing turns raw decoder outputs into what consumers read: class ids equal
``argmax`` over channels exactly (first maximum wins, NaN ranks highest) for every channel count."""
from __future__ import annotations

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
