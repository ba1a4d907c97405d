"""AdapterFusion (Pfeiffer et al., EACL 2021) over existing tasks' stage features.

Per stage and token: the query comes from the shared trunk feature x, keys and values from each
source task's delta ``F_t - x`` (the analogue of an adapter's up-projection output); attention is a
softmax over tasks, without 1/sqrt(d) as in the ``adapters`` library, and the shared feature is
added back (``residual_before``). V starts as the identity, so an untrained fusion is the uniform
average of the source tasks' features. To keep a fused task within a few percent of the trunk's
size, Q and K project to ``key_dim`` and V is a per-channel scale (diagonal, init 1) - a light
variant of the dynamic preset; its regulariser 0.01*||1 - v||^2 is :meth:`regularization`.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["StageFusion", "AdapterFusion"]


class StageFusion(nn.Module):
    def __init__(self, dim: int, key_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, key_dim)
        self.key = nn.Linear(dim, key_dim)
        self.value = nn.Parameter(torch.ones(dim))
        for lin in (self.query, self.key):
            nn.init.normal_(lin.weight, std=0.02)
            nn.init.zeros_(lin.bias)

    def forward(self, shared: torch.Tensor, task_feats: list[torch.Tensor]) -> torch.Tensor:
        """``shared`` [B, H, W, C]; ``task_feats`` T x [B, H, W, C] -> fused [B, H, W, C]."""
        deltas = torch.stack([f - shared for f in task_feats], dim=-2)  # [B, H, W, T, C]
        q = self.query(shared).unsqueeze(-2)  # [B, H, W, 1, k]
        scores = (q * self.key(deltas)).sum(-1)  # [B, H, W, T]
        alpha = scores.softmax(dim=-1).unsqueeze(-1)
        return shared + (alpha * deltas * self.value).sum(dim=-2)

    def attention(self, shared: torch.Tensor, task_feats: list[torch.Tensor]) -> torch.Tensor:
        """Fusion weights over tasks [B, H, W, T] (for inspection and plots)."""
        deltas = torch.stack([f - shared for f in task_feats], dim=-2)
        q = self.query(shared).unsqueeze(-2)
        return (q * self.key(deltas)).sum(-1).softmax(dim=-1)


class AdapterFusion(nn.Module):
    """One :class:`StageFusion` per encoder stage."""

    def __init__(self, stage_dims: tuple[int, ...], key_dim: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(StageFusion(d, key_dim) for d in stage_dims)

    def forward(self, shared: list[torch.Tensor], per_task: list[list[torch.Tensor]]
                ) -> list[torch.Tensor]:
        return [fusion(shared[s], [feats[s] for feats in per_task])
                for s, fusion in enumerate(self.stages)]

    def regularization(self) -> torch.Tensor:
        return 0.01 * sum(((1 - f.value) ** 2).sum() for f in self.stages)
