"""Training modes freeze what they claim: a checksum of every tensor outside the trained task."""
from __future__ import annotations

import pytest
import torch

from perception.config import TaskConfig
from perception.errors import ConfigError
from perception.training.modes import set_trainable, state_checksums, train_scope


def _step(model, image, task: str) -> None:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    out = model(image, [task])[task]
    out.float().pow(2).mean().backward()
    opt.step()


@pytest.mark.parametrize("sources", [(), ("segmentation", "drivable")], ids=["adapter", "fusion"])
def test_one_step_changes_only_the_task(tiny_model, image, sources) -> None:
    tiny_model.add_task(TaskConfig(name="corridor", kind="mask"), sources=sources)
    mode = "fusion" if sources else "adapter"
    trained = set_trainable(tiny_model, mode, "corridor")
    train_scope(tiny_model, mode, "corridor")
    before = state_checksums(tiny_model)
    _step(tiny_model, image, "corridor")
    after = state_checksums(tiny_model)
    changed = {k for k in before if before[k] != after[k]}
    own = ("tasks.corridor.", "groups.corridor.")
    assert changed and all(k.startswith(own) for k in changed), sorted(changed)[:5]
    assert all(n.startswith(own) for n in trained)
    assert any(k.startswith("tasks.corridor.decoder") for k in changed)


def test_base_mode_freezes_swin_weights(tiny_model, image) -> None:
    set_trainable(tiny_model, "base")
    train_scope(tiny_model, "base")
    before = state_checksums(tiny_model)
    _step(tiny_model, image, "segmentation")
    after = state_checksums(tiny_model)
    changed = {k for k in before if before[k] != after[k]}
    assert any(".lora_A" in k for k in changed)
    frozen = [k for k in before if k.endswith(("attn.qkv.weight", "mlp.fc1.weight",
                                                "downsample.reduction.weight"))]
    assert frozen and not (set(frozen) & changed)


def test_adapter_mode_refuses_a_task_on_the_shared_group(tiny_model) -> None:
    with pytest.raises(ConfigError, match="shares the base branch group"):
        set_trainable(tiny_model, "adapter", "lanes")
    with pytest.raises(ConfigError, match="unknown training mode 'lora'"):
        set_trainable(tiny_model, "lora")
