"""A small world for the bundle tests, built once per module: a tiny base model saved with
``save_model``, the same model with two added tasks (an own-group TADFormer task and a fusion
over segmentation + drivable) whose weights are moved away from their init, their bundles, and
the added tasks' reference outputs on a 64x128 image (small, so the tests stay fast on 2 CPUs)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from perception.config import TaskConfig, load_config
from perception.models.network import MultiTaskNet
from perception.training.bundle import save_bundle
from perception.training.model_file import save_model


def perturb(model: torch.nn.Module, prefixes: tuple[str, ...], seed: int) -> None:
    """Move parameters under ``prefixes`` away from their initial values (reproducibly)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(prefixes):
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def randomize_shared_adapters(model: torch.nn.Module, seed: int = 0) -> None:
    """LoRA B and gates start at zero; make them non-trivial (PEFT's init_weights=False idea)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B" in name or "prompt_gates" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@dataclass
class World:
    base_path: Path  # save_model() of the base model (trunk + base tasks)
    source: MultiTaskNet  # the base model + "corridor" (own group) + "fused" (fusion)
    bundles: dict[str, Path]  # task -> bundle directory
    image: torch.Tensor  # [1, 3, 64, 128]
    reference: dict[str, torch.Tensor]  # task -> raw output of ``source``


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("bundle_world")
    torch.manual_seed(0)
    model = MultiTaskNet(load_config("tiny")).eval()
    randomize_shared_adapters(model)
    base_path = save_model(model, root / "base.safetensors")
    model.add_task(TaskConfig(name="corridor", kind="mask"))
    model.add_task(TaskConfig(name="fused", kind="mask"), sources=("segmentation", "drivable"))
    model.eval()
    perturb(model, ("tasks.corridor.", "groups.corridor.", "tasks.fused."), seed=7)
    bundles = {t: save_bundle(model, t, root / "bundles", metrics={f"{t}/iou": 0.5})
               for t in ("corridor", "fused")}
    image = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(image, ["corridor", "fused"])
    return World(base_path, model, bundles, image, reference)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine two threads per process are much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
