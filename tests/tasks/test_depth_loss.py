"""Depth's training loss: SILog plus the optional multi-scale gradient-matching term."""

from __future__ import annotations

import math

import pytest
import torch

from perception.config import TaskConfig
from perception.errors import ConfigError
from perception.tasks.depth import Depth, gradient_loss, log_depth, silog_loss


def _target() -> torch.Tensor:
    torch.manual_seed(0)
    t = torch.rand(2, 16, 32) * 50 + 1
    t[:, :3] = 0  # invalid rows (sky)
    return t


def test_gradient_loss_ignores_a_constant_error_and_counts_a_spike_at_every_scale() -> None:
    """A prediction off by one factor everywhere costs nothing. A spike of 1 (log) at pixel
    (8, 8) of each frame costs 4 neighbour differences per frame at stride 1, 2 and 4 and 2 at
    stride 8 (its row is the only valid one there), each over that stride's valid pairs:
    (8/1574 + 8/340 + 8/74 + 4/6) / 4, counted by hand for 13 valid rows of 32."""
    t = _target()
    exact = torch.log(t.clamp_min(1.0))
    assert gradient_loss(exact + 0.3, t).item() == pytest.approx(0.0, abs=1e-6)
    spike = exact.clone()
    spike[:, 8, 8] += 1.0
    expect = (8 / 1574 + 8 / 340 + 8 / 74 + 4 / 6) / 4
    assert gradient_loss(spike, t).item() == pytest.approx(expect, rel=1e-5)
    # An error on invalid pixels does not count, and no valid pixel gives a zero that has a graph.
    off = exact.clone()
    off[:, :3] += 5.0
    assert gradient_loss(off, t).item() == pytest.approx(0.0, abs=1e-6)
    pred = exact.clone().requires_grad_(True)
    empty = gradient_loss(pred, torch.zeros_like(t))
    empty.backward()
    assert empty.item() == 0.0 and pred.grad is not None


def test_depth_loss_adds_the_gradient_term_by_its_weight() -> None:
    kind, t = Depth(), _target()
    raw = torch.randn(2, 1, 16, 32) * 0.3 + math.log(2.0)
    plain = kind.loss(raw, t, TaskConfig("depth", "depth"))
    assert plain.item() == pytest.approx(silog_loss(log_depth(raw), t).item())
    weighted = kind.loss(raw, t, TaskConfig("depth", "depth", grad_loss_weight=0.5))
    assert weighted.item() == pytest.approx(plain.item() + 0.5 * gradient_loss(log_depth(raw), t).item())
    assert weighted.item() > plain.item()


def test_grad_loss_weight_is_checked() -> None:
    with pytest.raises(ConfigError, match="task 'depth': grad_loss_weight must be >= 0, got -1"):
        TaskConfig("depth", "depth", grad_loss_weight=-1)
    with pytest.raises(ConfigError, match="task 'seg': grad_loss_weight is for depth tasks, not 'segmentation'"):
        TaskConfig("seg", "segmentation", grad_loss_weight=0.5)
