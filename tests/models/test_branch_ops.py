"""The fast forms of the branch's building blocks equal their textbook definitions: the Dynamic Task
Filter is a per-sample depthwise conv (GAP -> 1x1 conv -> FilterNorm kernels, spec §3.5), and window
partition/reverse by token gather equal pad + cyclic shift + partition (Swin)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from perception.models.swin import (
    WindowGeometry,
    from_windows,
    to_windows,
    window_partition,
    window_reverse,
)
from perception.models.tadformer import DynamicTaskFilter


def _reference_kernels(dtf: DynamicTaskFilter, z: torch.Tensor, valid: torch.Tensor | None
                       ) -> torch.Tensor:
    """Spec §3.5 steps 1-2 with the generator run as the 1x1 conv it is."""
    if valid is None:
        gap = z.mean(dim=(2, 3), keepdim=True)
    else:
        gap = (z * valid).sum(dim=(2, 3), keepdim=True) / valid.sum(dim=(2, 3), keepdim=True)
    ker = dtf.generator(gap).view(z.shape[0], dtf.rank, -1)
    ker = (ker - ker.mean(-1, keepdim=True)) / (ker.std(-1, keepdim=True) + 1e-10)
    return ker * dtf.filter_std.view(dtf.rank, -1) + dtf.filter_mean.view(dtf.rank, -1)


def _reference_dtf(dtf: DynamicTaskFilter, z: torch.Tensor, valid: torch.Tensor | None
                   ) -> torch.Tensor:
    """Depthwise cross-correlation written out: out[b, c, y, x] = sum_ij K[b, c, i, j] z[b, c, y+i-p,
    x+j-p], zero outside the grid, one k x k kernel per sample and channel."""
    if valid is not None:
        z = z * valid
    ker = _reference_kernels(dtf, z, valid)
    k, pad = dtf.kernel, dtf.kernel // 2
    h, w = z.shape[-2:]
    zp = F.pad(z, (pad, pad, pad, pad))
    out = torch.zeros_like(z)
    for i in range(k):
        for j in range(k):
            out += ker[:, :, i * k + j, None, None] * zp[:, :, i:i + h, j:j + w]
    return out


@pytest.mark.parametrize("batch,h,w,masked", [(1, 16, 32, False), (6, 8, 8, False),
                                              (6, 8, 8, True), (3, 7, 5, True)])
def test_dtf_is_a_per_sample_depthwise_conv(batch: int, h: int, w: int, masked: bool) -> None:
    torch.manual_seed(0)
    dtf = DynamicTaskFilter(rank=4)
    z = torch.randn(batch, 4, h, w)
    valid = None
    if masked:  # padded windows: some tokens are not real, each window keeps at least one
        valid = (torch.rand(batch, 1, h, w) > 0.3).float()
        valid[:, :, 0, 0] = 1.0
    with torch.no_grad():
        ker = dtf.kernels(z * valid if masked else z, valid)
        out = dtf(z, valid)
        ref = _reference_dtf(dtf, z, valid)
    assert torch.allclose(ker, _reference_kernels(dtf, z * valid if masked else z, valid),
                          atol=1e-5, rtol=1e-5)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    other = z.clone()
    other[0] += 1.0  # per-sample kernels: changing one sample changes no other sample's output
    with torch.no_grad():
        moved = dtf(other, valid)
    assert torch.equal(moved[1:], out[1:])


def _reference_to_windows(x: torch.Tensor, geo: WindowGeometry) -> torch.Tensor:
    if geo.pad[0] or geo.pad[1]:
        x = F.pad(x, (0, 0, 0, geo.pad[1], 0, geo.pad[0]))
    if geo.shift[0] or geo.shift[1]:
        x = torch.roll(x, shifts=(-geo.shift[0], -geo.shift[1]), dims=(1, 2))
    return window_partition(x, geo.window)


def _reference_from_windows(windows: torch.Tensor, geo: WindowGeometry) -> torch.Tensor:
    x = window_reverse(windows, geo.window, *geo.padded)
    if geo.shift[0] or geo.shift[1]:
        x = torch.roll(x, shifts=geo.shift, dims=(1, 2))
    return x[:, : geo.height, : geo.width]


@pytest.mark.parametrize("h,w,window,shifted", [
    (64, 128, 8, True), (64, 128, 8, False), (8, 16, 8, True),  # the tiny model at 256x512
    (30, 50, 7, True), (5, 9, 7, True), (14, 21, 7, False),  # padded maps and map < window
])
def test_window_gather_equals_shift_and_partition(h: int, w: int, window: int,
                                                  shifted: bool) -> None:
    geo = WindowGeometry.of(h, w, window, shifted)
    x = torch.randn(2, h, w, 5)
    windows = to_windows(x, geo)
    assert torch.equal(windows, _reference_to_windows(x, geo))
    other = torch.randn_like(windows)
    assert torch.equal(from_windows(other, geo), _reference_from_windows(other, geo))
    assert torch.equal(from_windows(windows, geo), x)
