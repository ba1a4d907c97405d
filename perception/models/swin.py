"""Swin Transformer encoder (Liu et al., ICCV 2021) with task-shared LoRA, for any H, W that are
multiples of 32.

Parameter names and math follow timm's ``SwinTransformer`` (>= 0.9 layout: ``layers.{i}.downsample``
merges at the *start* of stage i), so timm checkpoints load unchanged; see ``checkpoint.py`` for the
official Microsoft and Hugging Face layouts. Features are NHWC ``[B, H, W, C]``.

Window rule, per dimension (as timm): a feature map no larger than the window uses one window of
its own size and no shift. Otherwise the map is padded to a multiple of the window and the padded
tokens are masked out of attention (timm and the official code let them take part; the sizes we
test parity at need no padding).

Task isolation: the encoder never sees prompts. For the task branches it records, per block, the
windowed keys/values and, in the last block of each stage, the intermediate products the
TADFormer/MTLoRA task path reuses (``BlockTrace``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from perception.config import AdapterConfig, EncoderConfig
from perception.errors import InputError
from perception.models.lora import LoRALinear

__all__ = ["SwinEncoder", "SwinBlock", "BlockTrace", "WindowGeometry", "window_partition",
           "window_reverse"]

_NEG = -1e4  # additive mask; finite so masked rows stay NaN-free and export-friendly


@dataclass
class BlockTrace:
    """What the task branches read from one shared block (shapes for B images, nW windows,
    N = window tokens, nH heads, d = head dim)."""

    geometry: WindowGeometry
    k: torch.Tensor  # [B*nW, nH, N, d] patch keys per window
    v: torch.Tensor  # [B*nW, nH, N, d] patch values per window
    # Only for the last block of a stage (the task-adapting block):
    x: torch.Tensor | None = None  # [B, H, W, C] block input
    o: torch.Tensor | None = None  # [B*nW, N, C] attention output before proj
    pre_proj: torch.Tensor | None = None  # [B*nW, N, C] frozen proj (W o + b)
    x1: torch.Tensor | None = None  # [B, H, W, C] shared stream after attention residual
    pre_fc1: torch.Tensor | None = None  # [B, H, W, 4C] frozen fc1 on LN2(x1)
    hidden: torch.Tensor | None = None  # [B, H, W, 4C] shared MLP hidden GELU(fc1)
    pre_fc2: torch.Tensor | None = None  # [B, H, W, C] frozen fc2 on hidden


@dataclass(frozen=True)
class WindowGeometry:
    """Window size, shift and padding of one block at one feature-map size."""

    height: int
    width: int
    window: tuple[int, int]
    shift: tuple[int, int]
    pad: tuple[int, int]  # bottom, right

    @property
    def padded(self) -> tuple[int, int]:
        return self.height + self.pad[0], self.width + self.pad[1]

    @property
    def num_windows(self) -> int:
        hp, wp = self.padded
        return (hp // self.window[0]) * (wp // self.window[1])

    @property
    def tokens(self) -> int:
        return self.window[0] * self.window[1]

    @staticmethod
    def of(height: int, width: int, window: int, shifted: bool) -> WindowGeometry:
        win, shift, pad = [], [], []
        for size in (height, width):
            if size <= window:
                win.append(size)
                shift.append(0)
                pad.append(0)
            else:
                win.append(window)
                shift.append(window // 2 if shifted else 0)
                pad.append((-size) % window)
        return WindowGeometry(height, width, tuple(win), tuple(shift), tuple(pad))  # type: ignore[arg-type]


def window_partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """[B, H, W, C] -> [B*nW, wh*ww, C]."""
    b, h, w, c = x.shape
    wh, ww = window
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def window_reverse(windows: torch.Tensor, window: tuple[int, int], h: int, w: int) -> torch.Tensor:
    """[B*nW, wh*ww, C] -> [B, H, W, C]."""
    wh, ww = window
    c = windows.shape[-1]
    x = windows.view(-1, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def to_windows(x: torch.Tensor, geo: WindowGeometry) -> torch.Tensor:
    """Pad, cyclically shift and partition a [B, H, W, C] map into [B*nW, N, C] windows.

    Shift and partition are one gather of tokens (:func:`window_order`): a single copy, where
    roll + partition take three in eager and a Transpose plus two Slice/Concat pairs in ONNX."""
    if geo.pad[0] or geo.pad[1]:
        x = F.pad(x, (0, 0, 0, geo.pad[1], 0, geo.pad[0]))
    b, c = x.shape[0], x.shape[-1]
    tokens = x.reshape(b, -1, c).index_select(1, window_order(geo, x.device))
    return tokens.view(-1, geo.tokens, c)


def from_windows(windows: torch.Tensor, geo: WindowGeometry) -> torch.Tensor:
    """Inverse of :func:`to_windows`: [B*nW, N, C] -> [B, H, W, C] (padding dropped), one gather."""
    c = windows.shape[-1]
    x = windows.reshape(-1, geo.num_windows * geo.tokens, c)
    return x.index_select(1, image_order(geo, windows.device)).view(-1, geo.height, geo.width, c)


_CONSTANTS: dict[tuple, torch.Tensor | None] = {}


def cached_constant(key: tuple, build):
    """Geometry-derived constants (masks, bias indices), built once per shape and device.

    Under torch.export/compile a warm cache makes them graph constants (folded initialisers in
    ONNX); a cold cache builds them in-graph without storing traced values."""
    if key in _CONSTANTS:
        return _CONSTANTS[key]
    if torch.compiler.is_compiling():
        return build()
    # Normal tensors even when first built under inference_mode, so the same process can train.
    with torch.inference_mode(False):
        value = build()
    if not torch.compiler.is_compiling():
        _CONSTANTS[key] = value
    return value


def window_order(geo: WindowGeometry, device: torch.device) -> torch.Tensor:
    """[nW*N] int64: for each windowed position, the index of the padded-map token it holds."""
    return cached_constant(("window_order", geo, str(device)),
                           lambda: torch.as_tensor(_window_order(geo), device=device))


def image_order(geo: WindowGeometry, device: torch.device) -> torch.Tensor:
    """[H*W] int64: for each (unpadded) map token, the windowed position that holds it."""
    def build() -> torch.Tensor:
        inverse = np.argsort(_window_order(geo)).reshape(geo.padded)  # inverse permutation
        return torch.as_tensor(inverse[: geo.height, : geo.width].reshape(-1), device=device)

    return cached_constant(("image_order", geo, str(device)), build)


def _window_order(geo: WindowGeometry) -> np.ndarray:
    """Built in numpy, so a tracer records one constant whether or not the cache is warm (traced
    torch ops would leave the index, and every shape after the gather, unknown to the exporter)."""
    (hp, wp), (wh, ww) = geo.padded, geo.window
    ids = np.roll(np.arange(hp * wp).reshape(hp, wp), (-geo.shift[0], -geo.shift[1]), axis=(0, 1))
    return ids.reshape(hp // wh, wh, wp // ww, ww).transpose(0, 2, 1, 3).reshape(-1)


def key_valid(geo: WindowGeometry, device: torch.device) -> torch.Tensor | None:
    """[nW, N] bool, False for padded tokens; None when nothing is padded."""
    return cached_constant(("valid", geo, str(device)), lambda: _key_valid(geo, device))


def _key_valid(geo: WindowGeometry, device: torch.device) -> torch.Tensor | None:
    if not (geo.pad[0] or geo.pad[1]):
        return None
    hp, wp = geo.padded
    valid = torch.zeros(1, hp, wp, 1, device=device)
    valid[:, : geo.height, : geo.width] = 1.0
    if geo.shift[0] or geo.shift[1]:
        valid = torch.roll(valid, shifts=(-geo.shift[0], -geo.shift[1]), dims=(1, 2))
    return window_partition(valid, geo.window)[..., 0] > 0.5


def attention_mask(geo: WindowGeometry, device: torch.device) -> torch.Tensor | None:
    """[nW, N, N] additive mask: shifted-window regions (as Swin) and padded keys."""
    return cached_constant(("mask", geo, str(device)), lambda: _attention_mask(geo, device))


def _attention_mask(geo: WindowGeometry, device: torch.device) -> torch.Tensor | None:
    hp, wp = geo.padded
    mask = None
    if geo.shift[0] or geo.shift[1]:
        img = torch.zeros(1, hp, wp, 1, device=device)
        cnt = 0
        h_sl = ((0, hp - geo.window[0]), (hp - geo.window[0], hp - geo.shift[0]), (hp - geo.shift[0], hp))
        w_sl = ((0, wp - geo.window[1]), (wp - geo.window[1], wp - geo.shift[1]), (wp - geo.shift[1], wp))
        for h0, h1 in h_sl:
            for w0, w1 in w_sl:
                img[:, h0:h1, w0:w1, :] = cnt
                cnt += 1
        ids = window_partition(img, geo.window)[..., 0]  # [nW, N]
        diff = ids.unsqueeze(1) - ids.unsqueeze(2)
        mask = torch.zeros_like(diff).masked_fill(diff != 0, _NEG)
    valid = key_valid(geo, device)
    if valid is not None:
        pad_mask = torch.zeros(valid.shape[0], 1, valid.shape[1], device=device)
        pad_mask = pad_mask.masked_fill(~valid.unsqueeze(1), _NEG)
        mask = pad_mask if mask is None else mask + pad_mask
    return mask


def _relative_index(table_window: int, window: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Flat indices into a (2w-1)^2 relative-position table for a (possibly smaller) window."""
    wh, ww = window
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij"))
    coords = coords.flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[..., 0] += table_window - 1
    rel[..., 1] += table_window - 1
    return (rel[..., 0] * (2 * table_window - 1) + rel[..., 1]).reshape(-1).to(device)


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, lora: AdapterConfig | None, mergeable: bool) -> None:
        super().__init__()
        rank = lora.rank if lora else 0
        kw = dict(rank=rank, scale=lora.scale if lora else 1.0,
                  dropout=lora.dropout if lora else 0.0, mergeable=mergeable)
        self.fc1 = LoRALinear(dim, hidden, **kw)
        self.act = nn.GELU()
        self.fc2 = LoRALinear(hidden, dim, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a relative position bias (timm names)."""

    def __init__(self, dim: int, num_heads: int, window: int, qkv_bias: bool,
                 lora: AdapterConfig | None, mergeable: bool) -> None:
        super().__init__()
        self.dim, self.num_heads, self.window = dim, num_heads, window
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        rank = lora.rank if lora else 0
        kw = dict(rank=rank, scale=lora.scale if lora else 1.0,
                  dropout=lora.dropout if lora else 0.0)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) * (2 * window - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = LoRALinear(dim, dim * 3, bias=qkv_bias, mergeable=True, **kw)
        self.proj = LoRALinear(dim, dim, mergeable=mergeable, **kw)

    def relative_bias(self, window: tuple[int, int]) -> torch.Tensor:
        """[nH, N, N] bias for a (possibly smaller than configured) window, indexed from the table."""
        device = self.relative_position_bias_table.device
        idx = cached_constant(("relpos", self.window, window, str(device)),
                              lambda: _relative_index(self.window, window, device))
        n = window[0] * window[1]
        bias = self.relative_position_bias_table[idx].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous()


class SwinBlock(nn.Module):
    """One (shifted-)window block. ``forward`` returns the new map and, when asked, a trace."""

    def __init__(self, dim: int, num_heads: int, window: int, shifted: bool, mlp_ratio: float,
                 qkv_bias: bool, drop_path: float, lora: AdapterConfig | None,
                 is_last: bool) -> None:
        super().__init__()
        self.window, self.shifted, self.is_last = window, shifted, is_last
        # The task path reuses W x of proj/fc1/fc2 in a stage's last block: keep those unmerged.
        mergeable = not is_last
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window, qkv_bias, lora, mergeable)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), lora, mergeable)

    def geometry(self, height: int, width: int) -> WindowGeometry:
        return WindowGeometry.of(height, width, self.window, self.shifted)

    def forward(self, x: torch.Tensor, trace: bool = False) -> tuple[torch.Tensor, BlockTrace | None]:
        b, h, w, c = x.shape
        geo = self.geometry(h, w)
        attn = self.attn
        nh, hd = attn.num_heads, attn.head_dim
        windows = to_windows(self.norm1(x), geo)  # [B*nW, N, C]
        n = windows.shape[1]
        qkv = attn.qkv(windows).reshape(-1, n, 3, nh, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # [B*nW, nH, N, d]
        logits = (q * attn.scale) @ k.transpose(-2, -1)
        logits = logits + attn.relative_bias(geo.window).unsqueeze(0)
        mask = attention_mask(geo, x.device)
        if mask is not None:
            nw = mask.shape[0]
            logits = logits.view(-1, nw, nh, n, n) + mask.unsqueeze(1).unsqueeze(0)
            logits = logits.view(-1, nh, n, n)
        o = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, n, c)  # [B*nW, N, C]
        record = trace and self.is_last
        if record:
            pre_proj, y = attn.proj.forward_split(o)
        else:
            y = attn.proj(o)
        x1 = x + self.drop_path(from_windows(y, geo))
        if record:
            pre_fc1, fc1 = self.mlp.fc1.forward_split(self.norm2(x1))
            hidden = self.mlp.act(fc1)
            pre_fc2, m = self.mlp.fc2.forward_split(hidden)
        else:
            m = self.mlp(self.norm2(x1))
        out = x1 + self.drop_path(m)
        if not trace:
            return out, None
        bt = BlockTrace(geometry=geo, k=k, v=v)
        if record:
            bt.x, bt.o, bt.pre_proj, bt.x1 = x, o, pre_proj, x1
            bt.pre_fc1, bt.hidden, bt.pre_fc2 = pre_fc1, hidden, pre_fc2
        return out, bt


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # [B, H/4, W/4, C]


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat -> LN(4C) -> Linear(4C -> 2C), timm/official order."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = x.reshape(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, cfg: EncoderConfig,
                 lora: AdapterConfig | None, drop_paths: list[float], downsample: bool) -> None:
        super().__init__()
        in_dim = dim // 2 if downsample else dim
        self.downsample = PatchMerging(in_dim) if downsample else nn.Identity()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, cfg.window_size, shifted=(i % 2 == 1),
                      mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, drop_path=drop_paths[i],
                      lora=lora, is_last=(i == depth - 1))
            for i in range(depth)
        )


class SwinEncoder(nn.Module):
    """Patch embedding + four Swin stages. ``forward(x)`` -> four NHWC stage outputs."""

    def __init__(self, cfg: EncoderConfig, lora: AdapterConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        lora = lora if lora is not None and lora.variant != "none" and lora.rank > 0 else None
        self.patch_embed = PatchEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_size)
        total = sum(cfg.depths)
        rates = torch.linspace(0, cfg.drop_path_rate, total).tolist() if total else []
        dims = cfg.stage_dims()
        self.layers = nn.ModuleList()
        start = 0
        for i, depth in enumerate(cfg.depths):
            self.layers.append(SwinStage(dims[i], depth, cfg.num_heads[i], cfg, lora,
                                         rates[start:start + depth], downsample=i > 0))
            start += depth

    @property
    def stage_dims(self) -> tuple[int, int, int, int]:
        return self.cfg.stage_dims()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputError` naming what was expected and what was given."""
        if not isinstance(x, torch.Tensor):
            raise InputError(f"expected a torch.Tensor image batch, got {type(x).__name__}")
        if x.ndim != 4:
            raise InputError(f"expected a [B, 3, H, W] tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.cfg.in_chans:
            raise InputError(
                f"expected {self.cfg.in_chans} input channels (RGB, NCHW), got {x.shape[1]} "
                f"in shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise InputError(f"expected a float tensor (normalised RGB), got dtype {x.dtype}")
        h, w = x.shape[-2:]
        if h % 32 or w % 32 or h <= 0 or w <= 0:
            raise InputError(f"image height and width must be multiples of 32, got {h}x{w}")

    def forward(self, x: torch.Tensor, trace: bool = False
                ) -> tuple[list[torch.Tensor], list[list[BlockTrace]]]:
        """Returns (stage outputs [B, H_s, W_s, C_s] x4, per-stage block traces if ``trace``)."""
        self.check_input(x)
        x = self.patch_embed(x)
        feats: list[torch.Tensor] = []
        traces: list[list[BlockTrace]] = []
        for stage in self.layers:
            x = stage.downsample(x)
            stage_traces: list[BlockTrace] = []
            for block in stage.blocks:
                x, bt = block(x, trace=trace)
                if bt is not None:
                    stage_traces.append(bt)
            feats.append(x)
            traces.append(stage_traces)
        return feats, traces

    def lora_layers(self) -> list[LoRALinear]:
        return [m for m in self.modules() if isinstance(m, LoRALinear)]

    def merge_lora(self) -> None:
        """Fold the shared LoRA into the frozen weights where that is exact for every branch."""
        for layer in self.lora_layers():
            layer.merge()

    def unmerge_lora(self) -> None:
        for layer in self.lora_layers():
            layer.unmerge()
