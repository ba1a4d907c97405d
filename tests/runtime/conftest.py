"""A tiny model with non-trivial adapters, a corridor bundle trained-free but random, real frames."""
from __future__ import annotations

import glob
import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from perception.config import TaskConfig, load_config
from perception.models.network import MultiTaskNet
from perception.training.bundle import save_bundle

HAS_CUDA = torch.cuda.is_available()
HAS_TORCH_TRT = importlib.util.find_spec("torch_tensorrt") is not None
INPUT = (128, 256)  # small input keeps the suite fast; every stage map is a window multiple


def make_model(seed: int = 0) -> MultiTaskNet:
    torch.manual_seed(seed)
    cfg = load_config("tiny").replace(input_size=list(INPUT))
    model = MultiTaskNet(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B" in name or "prompt_gates" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture(scope="session")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """corridor as a TADFormer branch and as a fusion task, plus a second corridor version."""
    out = tmp_path_factory.mktemp("bundles")
    paths = {}
    for name, sources, seed in (("corridor", (), 1), ("fused", ("segmentation", "drivable"), 2),
                                ("corridor_v2", (), 3)):
        model = make_model()
        task = "corridor" if name == "corridor_v2" else name
        head = model.add_task(TaskConfig(name=task, kind="mask"), sources=sources)
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in head.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        paths[name] = save_bundle(model, task, out / f"{name}.tadtask")
    return paths


@pytest.fixture(scope="session")
def frames(real_data) -> list[np.ndarray]:
    files = sorted(glob.glob(str(real_data / "yolop_bdd100k" / "**" / "*.jpg"), recursive=True))
    return [cv2.imread(f) for f in files[:3]]
