"""Tiny models for the network tests, with adapters initialised away from the identity (PEFT's
``init_weights=False`` idea) so equivalence tests cannot pass trivially."""
from __future__ import annotations

import pytest
import torch

from perception.config import load_config
from perception.models.network import MultiTaskNet


def randomize_adapters(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B" in name or "prompt_gates" in name or "task_lora" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.fixture
def tiny_cfg():
    return load_config("tiny")


@pytest.fixture
def tiny_model(tiny_cfg) -> MultiTaskNet:
    torch.manual_seed(0)
    model = MultiTaskNet(tiny_cfg).eval()
    randomize_adapters(model)
    return model


@pytest.fixture
def image() -> torch.Tensor:
    return torch.randn(1, 3, 256, 512, generator=torch.Generator().manual_seed(1))
