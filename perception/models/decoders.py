"""Per-task dense decoders over four encoder stages. Inputs NHWC (as the encoder), outputs NCHW
raw outputs at the decoder's stride; the task kind upsamples them to the input
(``TaskKind.upsample``), in the network and after a compiled slot alike.

- :class:`FPNDecoder`: light top-down head on the pre-merging stage features (strides 4/8/16/32),
  output stride 4 so thin lane lines survive.
- :class:`HRNetDecoder`: the MTLoRA/TADFormer paper head ("HRNet-style", spec §2.6) on the
  patch-merged features (strides 8/16/32/32): 1x1 downsamplers, concat at the finest scale,
  1x1 conv + BN + ReLU, 1x1 conv to K.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from perception.config import DecoderConfig

__all__ = ["FPNDecoder", "HRNetDecoder", "build_decoder"]


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


class FPNDecoder(nn.Module):
    out_layer = "head"  # the conv that makes the output channels

    def __init__(self, in_dims: tuple[int, ...], channels: int, out_channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(d, channels, 1) for d in in_dims)
        self.fuse = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(channels, out_channels, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](_nchw(feats[-1]))
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1]), strict=False):
            y = lat(_nchw(f))
            x = y + F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.fuse(x))


class HRNetDecoder(nn.Module):
    out_layer = "last_layer.3"

    def __init__(self, in_dims: tuple[int, ...], hr_channels: tuple[int, ...],
                 out_channels: int) -> None:
        super().__init__()
        self.downsampler = nn.ModuleList(
            nn.Conv2d(d, c, 1, bias=False) for d, c in zip(in_dims, hr_channels, strict=False))
        total = sum(hr_channels)
        width = 4 * total  # 270 -> 1080 for Swin-T, as in the reference head
        self.last_layer = nn.Sequential(
            nn.Conv2d(total, width, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, 1),
        )

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        xs = [down(_nchw(f)) for down, f in zip(self.downsampler, feats, strict=False)]
        hw = xs[0].shape[-2:]
        xs = [xs[0]] + [F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
                        for x in xs[1:]]
        return self.last_layer(torch.cat(xs, dim=1))


def build_decoder(cfg: DecoderConfig, stage_dims: tuple[int, ...], out_channels: int) -> nn.Module:
    """Decoder for one task. ``hrnet`` consumes patch-merged features: 2C at stages 1-3, C at 4."""
    if cfg.kind == "hrnet":
        merged = tuple(2 * d for d in stage_dims[:-1]) + (stage_dims[-1],)
        return HRNetDecoder(merged, cfg.hrnet_channels, out_channels)
    return FPNDecoder(stage_dims, cfg.channels, out_channels)
