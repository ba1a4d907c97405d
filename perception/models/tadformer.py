"""TADFormer task branches (Baek et al., CVPR 2025) on a shared Swin, with task isolation.

Spec: ``shared/research/tadformer_spec.md`` §3 (paper-faithful dynamic-filter variant, §3.12).
Per task: one prompt token, carried through every block (VPT-shallow) and up-projected at patch
merging; in the last block of each stage the TPC operator turns the prompt's raw attention logits
over the window's patches into a per-head map that modulates the attention output; the TA-module
runs the shared LoRA down-projection -> Dynamic Task Filter -> shared up-projection on proj, fc1 and
fc2; a stage-wise sigmoid gate mixes the TPC skip term into the task feature.

Our deliberate deviation (DESIGN §2): patch tokens never attend to prompts and prompts of different
tasks never attend to each other. Each prompt attends to itself and the window's patches. The
shared trunk is therefore identical whatever tasks are loaded, and each task is computed on its own
(never batched with other tasks), so a task's output is bit-identical with or without the others.

Parameters that the paper shares across its tasks (DTFs, prompt LayerNorms, prompt up-projections,
gates) live in a :class:`BranchParams` group. Base tasks share the ``base`` group (which reproduces
the paper's parameter count); a task added later gets a group of its own, so training it cannot
touch any other task.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from perception.config import AdapterConfig, EncoderConfig
from perception.models.swin import BlockTrace, SwinBlock, SwinEncoder, from_windows, key_valid

__all__ = ["DynamicTaskFilter", "BranchParams", "TaskPrompt", "tadformer_branch",
           "MTLoRATaskParams", "mtlora_branch"]

_NEG = -1e4


class DynamicTaskFilter(nn.Module):
    """Input-conditioned depthwise k x k filter (DTF): GAP -> 1x1 conv -> FilterNorm -> per-sample
    depthwise conv, run as one grouped conv over [1, B'*r, h, w] (spec §3.5, export note). The group
    count depends on B', which is static in every compiled program, and one conv costs a fraction
    of k*k shifted multiply-adds (each a full pass over z) in eager, ONNX Runtime and TensorRT."""

    def __init__(self, rank: int, kernel: int = 3) -> None:
        super().__init__()
        self.rank, self.kernel = rank, kernel
        taps = kernel * kernel
        self.generator = nn.Conv2d(rank, rank * taps, kernel_size=1)  # 9r^2 + 9r
        gain = math.sqrt(2.0) / kernel  # DDF FilterNorm init (relu gain / k)
        self.filter_std = nn.Parameter(torch.randn(rank * taps) * gain)  # gamma, learned
        self.filter_mean = nn.Parameter(torch.randn(rank * taps))  # beta, learned

    def kernels(self, z: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        """[B', r, h, w] -> per-sample kernels [B', r, k*k] (FilterNorm kept in fp32)."""
        if valid is None:
            gap = z.mean(dim=(2, 3))
        else:
            gap = (z * valid).sum(dim=(2, 3)) / valid.sum(dim=(2, 3))
        # The 1x1 conv on the pooled [B', r, 1, 1] map is a linear layer; as one it is a GEMM.
        ker = F.linear(gap, self.generator.weight.flatten(1), self.generator.bias)
        ker = ker.view(z.shape[0], self.rank, -1).float()
        ker = (ker - ker.mean(-1, keepdim=True)) / (ker.std(-1, keepdim=True) + 1e-10)
        taps = self.kernel * self.kernel
        ker = ker * self.filter_std.view(self.rank, taps) + self.filter_mean.view(self.rank, taps)
        return ker.to(z.dtype)

    def forward(self, z: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` [B', r, h, w]; ``valid`` [B', 1, h, w] (1 = real token) or None."""
        if valid is not None:
            z = z * valid
        ker = self.kernels(z, valid)
        # Plain ints: the TorchScript exporter must know the kernel's shape (it does not infer it
        # through traced sizes), and a compiled program's shapes are static anyway.
        b, r, h, w = (int(s) for s in z.shape)
        k = self.kernel
        out = F.conv2d(z.reshape(1, b * r, h, w), ker.reshape(b * r, 1, k, k), padding=k // 2,
                       groups=b * r)
        return out.view(b, r, h, w)


class BranchParams(nn.Module):
    """The TADFormer parameters the paper shares across tasks: per adapted stage a prompt
    LayerNorm, a DTF for each of proj/fc1/fc2 and a gate, plus the prompt up-projections between
    stages. Stages before ``adapter.first_task_stage`` hold no norm or DTF (an ``Identity`` and an
    empty dict keep the later stages' parameter names), so no parameter sits unused."""

    def __init__(self, enc: EncoderConfig, adapter: AdapterConfig) -> None:
        super().__init__()
        dims = enc.stage_dims()
        self.first_stage = adapter.first_task_stage
        self.prompt_norms = nn.ModuleList(
            nn.LayerNorm(d) if s >= self.first_stage else nn.Identity() for s, d in enumerate(dims))
        self.dtf = nn.ModuleList(
            nn.ModuleDict({name: DynamicTaskFilter(adapter.rank, adapter.dtf_kernel)
                           for name in ("proj", "fc1", "fc2")} if s >= self.first_stage else {})
            for s in range(len(dims)))
        self.prompt_gates = nn.Parameter(torch.zeros(len(dims)))  # sigmoid(0) = 0.5 at start
        self.prompt_up = nn.ModuleList(nn.Linear(dims[i], dims[i + 1], bias=False)
                                       for i in range(len(dims) - 1))


class TaskPrompt(nn.Module):
    """One learnable prompt token per task (L = 1), init N(1, 1) truncated to [-2, 2] (spec §3.2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.prompt = nn.Parameter(torch.empty(1, dim))
        nn.init.trunc_normal_(self.prompt, mean=1.0, std=1.0, a=-2.0, b=2.0)


def _prompt_attention(block: SwinBlock, p: torch.Tensor, bt: BlockTrace
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt attends to itself and each window's patches (never the reverse).

    Returns the pooled attention output after proj [B, C] and the raw per-head logits over the
    patches [B, nW, nH, N] (unscaled q.k, as the TPC operator uses them)."""
    attn = block.attn
    b, c = p.shape
    nh, hd = attn.num_heads, attn.head_dim
    q, k_p, v_p = attn.qkv(block.norm1(p)).view(b, 3, nh, 1, hd).unbind(1)  # [B, nH, 1, d]
    n = bt.k.shape[2]
    keys = bt.k.view(b, -1, nh, n, hd)  # [B, nW, nH, N, d]
    vals = bt.v.view(b, -1, nh, n, hd)
    nw = keys.shape[1]
    raw = (keys @ q.transpose(-2, -1).unsqueeze(1)).squeeze(-1)  # [B, nW, nH, N]
    self_logit = (q * k_p).sum(-1).unsqueeze(1).expand(-1, nw, -1, -1)  # [B, nW, nH, 1]
    logits = torch.cat([self_logit, raw], dim=-1) * attn.scale
    valid = key_valid(bt.geometry, p.device)  # [nW, N] or None
    if valid is not None:
        pad = torch.zeros(valid.shape, device=p.device).masked_fill(~valid, _NEG)
        logits = logits + F.pad(pad, (1, 0))[None, :, None, :]
        raw = raw * valid[None, :, None, :]
    weights = logits.softmax(-1)  # [B, nW, nH, 1 + N]
    out = weights[..., :1] * v_p.view(b, 1, nh, hd) + (weights[..., None, 1:] @ vals).squeeze(-2)
    pooled = out.reshape(b, nw, c).mean(dim=1)  # mean over windows (proj is linear)
    return attn.proj(pooled), raw


def _grid(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B', h*w, r] tokens -> [B', r, h, w]."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """[B', r, h, w] -> [B', h*w, r]."""
    return x.flatten(2).transpose(1, 2)


def _ta_layer(layer: nn.Module, dtf: DynamicTaskFilter, x_t: torch.Tensor, grid_hw: tuple[int, int],
              valid: torch.Tensor | None, frozen: torch.Tensor) -> torch.Tensor:
    """``frozen + scale * B DTF(A x_t)``: shared down-projection, DTF on the token grid, shared
    up-projection. ``frozen`` ([..., out], the frozen layer on the shared stream) is added by the
    up-projection's GEMM itself, which saves two passes over the (4C-wide for fc1) output."""
    z = F.linear(layer.lora_dropout(x_t), layer.lora_A)  # [B', N, r]
    z = _tokens(dtf(_grid(z, *grid_hw), valid)).reshape(-1, z.shape[-1])
    up = (layer.lora_B * layer.scale).t()  # [r, out]
    return torch.addmm(frozen.reshape(-1, up.shape[1]), z, up).view(frozen.shape)


def _task_block(block: SwinBlock, bt: BlockTrace, raw: torch.Tensor, params: BranchParams,
                stage: int) -> torch.Tensor:
    """The task-adapting (last) block of a stage for one task: TPC -> TA-module on proj, fc1, fc2
    -> gated skip. Returns the task feature F_t [B, H, W, C]."""
    geo = bt.geometry
    b, h, w, c = bt.x.shape
    nh = block.attn.num_heads
    o = bt.o  # [B*nW, N, C]
    n = o.shape[1]
    # TPC: one GELU(raw logit) per (head, token) scales that head's channels of the attention output.
    amap = F.gelu(raw).permute(0, 1, 3, 2).reshape(-1, n, nh, 1)  # [B*nW, N, nH, 1]
    u = (o.view(-1, n, nh, c // nh) * amap).reshape(-1, n, c)  # skip term u_t
    f_t = params.prompt_norms[stage](o + u)
    valid = key_valid(geo, o.device)
    valid_grid = None
    if valid is not None:
        valid_grid = valid.float().repeat(b, 1).view(-1, 1, *geo.window)
    dtfs = params.dtf[stage]
    out_t = _ta_layer(block.attn.proj, dtfs["proj"], f_t, geo.window, valid_grid, bt.pre_proj)
    x1_t = bt.x + from_windows(out_t, geo)  # [B, H, W, C]
    mlp = block.mlp
    fc1_in = block.norm2(x1_t).view(b, h * w, c)
    hid = mlp.act(_ta_layer(mlp.fc1, dtfs["fc1"], fc1_in, (h, w), None, bt.pre_fc1))
    m_t = _ta_layer(mlp.fc2, dtfs["fc2"], hid.view(b, h * w, -1), (h, w), None, bt.pre_fc2)
    x2_t = x1_t + m_t
    gate = torch.sigmoid(params.prompt_gates[stage])
    return gate * from_windows(u, geo) + (1 - gate) * x2_t


def tadformer_branch(encoder: SwinEncoder, shared: list[torch.Tensor],
                     traces: list[list[BlockTrace]], prompt: TaskPrompt, params: BranchParams
                     ) -> list[torch.Tensor]:
    """Run one task's TADFormer branch over a traced trunk; returns F_t per stage [B, H, W, C].

    ``shared`` are the trunk's stage outputs: a stage before ``params.first_stage`` passes its
    shared feature on (the prompt still travels through it, so later stages see the same prompt)."""
    batch = traces[0][0].k.shape[0] // traces[0][0].geometry.num_windows
    p = prompt.prompt.expand(batch, -1)
    feats: list[torch.Tensor] = []
    num_stages = len(encoder.layers)
    for s, stage in enumerate(encoder.layers):
        blocks = list(stage.blocks)
        for j, block in enumerate(blocks):
            bt = traces[s][j]
            p_attn, raw = _prompt_attention(block, p, bt)
            if block.is_last:
                feats.append(_task_block(block, bt, raw, params, s) if s >= params.first_stage
                             else shared[s])
            if not (s == num_stages - 1 and j == len(blocks) - 1):
                # Code behaviour of the reference (spec §3.3 step 8): MLP on the pooled attention.
                p = p + block.mlp(block.norm2(p_attn))
        if s < num_stages - 1:
            p = params.prompt_up[s](p)
    return feats


class MTLoRATaskParams(nn.Module):
    """MTLoRA's task-specific LoRA (rank r_t) on proj, fc1, fc2 of each stage's last block."""

    def __init__(self, enc: EncoderConfig, adapter: AdapterConfig) -> None:
        super().__init__()
        r, ratio = adapter.task_rank, enc.mlp_ratio
        self.scale = adapter.scale
        self.layers = nn.ModuleList()
        for dim in enc.stage_dims():
            hid = int(dim * ratio)
            pairs = nn.ParameterDict()
            for name, (fan_in, fan_out) in {"proj": (dim, dim), "fc1": (dim, hid),
                                            "fc2": (hid, dim)}.items():
                a = nn.Parameter(torch.empty(r, fan_in))
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
                pairs[f"{name}_A"] = a
                pairs[f"{name}_B"] = nn.Parameter(torch.zeros(fan_out, r))
            self.layers.append(pairs)

    def delta(self, stage: int, name: str, x: torch.Tensor) -> torch.Tensor:
        pairs = self.layers[stage]
        return self.scale * F.linear(F.linear(x, pairs[f"{name}_A"]), pairs[f"{name}_B"])


def mtlora_branch(encoder: SwinEncoder, traces: list[list[BlockTrace]],
                  params: MTLoRATaskParams) -> list[torch.Tensor]:
    """MTLoRA task path (spec §2.3): per-task LoRA on the shared stream's last blocks."""
    feats = []
    for s, stage in enumerate(encoder.layers):
        block = stage.blocks[-1]
        bt = traces[s][-1]
        b, h, w, c = bt.x.shape
        y_t = bt.pre_proj + params.delta(s, "proj", bt.o)  # proj's task input is the shared o
        x1_t = bt.x + from_windows(y_t, bt.geometry)
        hid = block.mlp.act(bt.pre_fc1 + params.delta(s, "fc1", block.norm2(x1_t)))
        x2_t = x1_t + bt.pre_fc2 + params.delta(s, "fc2", hid)
        feats.append(x2_t)
    return feats
