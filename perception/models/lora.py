"""Task-shared LoRA (TADFormer's TS-module, MTLoRA's TA-LoRA) as a drop-in ``nn.Linear``.

The frozen weight keeps timm's parameter names (``weight``, ``bias``), so Swin checkpoints load
unchanged; the adapter adds ``lora_A`` [r, in] and ``lora_B`` [out, r]. ``lora_B`` starts at zero,
so an untrained adapter leaves the frozen function exactly as it was.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LoRALinear"]


class LoRALinear(nn.Linear):
    """``y = W x + b + scale * B A dropout(x)``; ``merge()`` folds ``scale*B@A`` into ``W``.

    ``mergeable=False`` marks layers whose frozen product ``W x`` is also consumed by the task
    branches (the last block of each stage): folding there would leak the shared update into the
    branch's frozen term, so those stay unmerged.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rank: int = 0,
        scale: float = 4.0,
        dropout: float = 0.0,
        mergeable: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.rank = rank
        self.scale = scale
        self.mergeable = mergeable
        self.merged = False
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if rank > 0:
            self.lora_A = nn.Parameter(torch.empty(rank, in_features))
            self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def frozen(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen layer alone (``W x + b``); only valid while unmerged."""
        return F.linear(x, self.weight, self.bias)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The shared low-rank update ``scale * B A dropout(x)``."""
        return self.scale * F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)

    def forward_split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(W x + b, full output)`` with one frozen matmul."""
        pre = self.frozen(x)
        if self.rank == 0 or self.merged:
            return pre, pre
        return pre, pre + self.delta(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.rank > 0 and not self.merged:
            out = out + self.delta(x)
        return out

    @torch.no_grad()
    def merge(self) -> None:
        if self.rank == 0 or self.merged or not self.mergeable:
            return
        self.weight += self.scale * (self.lora_B @ self.lora_A)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        self.weight -= self.scale * (self.lora_B @ self.lora_A)
        self.merged = False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scale={self.scale}"
