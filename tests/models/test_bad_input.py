"""Bad input raises errors that name what was expected and what was given."""
from __future__ import annotations

import pickle

import pytest
import torch

from perception.config import EncoderConfig, load_config, model_config_from_dict
from perception.errors import CheckpointError, ConfigError, InputError
from perception.models.checkpoint import load_swin_weights
from perception.models.swin import SwinEncoder


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.randn(1, 4, 64, 64), r"expected 3 input channels .* got 4"),
        (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), r"float tensor .* got dtype torch.uint8"),
        (torch.randn(1, 3, 64, 80), r"multiples of 32, got 64x80"),
        (torch.randn(3, 64, 64), r"\[B, 3, H, W\] tensor, got shape \(3, 64, 64\)"),
    ],
    ids=["channels", "dtype", "size", "rank"],
)
def test_bad_images(tiny_model, x, match) -> None:
    with pytest.raises(InputError, match=match):
        tiny_model(x)


def test_checkpoint_with_wrong_keys_lists_them() -> None:
    enc = SwinEncoder(EncoderConfig(embed_dim=32, num_heads=(1, 2, 4, 8)))
    sd = dict(enc.state_dict())
    sd.pop("layers.0.blocks.0.attn.qkv.weight")
    sd["layers.0.blocks.0.attn.qkv_extra.weight"] = torch.zeros(3)
    sd["patch_embed.proj.weight"] = torch.zeros(32, 3, 8, 8)
    with pytest.raises(CheckpointError) as info:
        load_swin_weights(enc, sd)
    msg = str(info.value)
    assert "missing 1 keys: layers.0.blocks.0.attn.qkv.weight" in msg
    assert "unexpected 1 keys: layers.0.blocks.0.attn.qkv_extra.weight" in msg
    assert "patch_embed.proj.weight: checkpoint (32, 3, 8, 8) vs model (32, 3, 4, 4)" in msg


def test_checkpoint_that_is_not_a_state_dict_is_refused(tmp_path) -> None:
    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps({"model": object()}))
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_swin_weights(SwinEncoder(EncoderConfig()), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_swin_weights(SwinEncoder(EncoderConfig()), tmp_path / "missing.pth")


def test_config_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"unknown keys \['rnak'\]"):
        model_config_from_dict({"name": "x", "input_size": [64, 64], "adapter": {"rnak": 4}}, "t")
    with pytest.raises(ConfigError, match="multiples of 32, got 64x70"):
        model_config_from_dict({"name": "x", "input_size": [64, 70]}, "t")
    with pytest.raises(ConfigError, match="unknown config 'nope'; shipped configs"):
        load_config("nope")
    with pytest.raises(ConfigError, match=r"adapter.variant 'lora'"):
        load_config("tiny").replace(**{"adapter.variant": "lora"})


def test_unknown_task_kind_lists_known_kinds() -> None:
    from perception.errors import RegistryError
    from perception.models.network import MultiTaskNet

    cfg = model_config_from_dict({"name": "x", "input_size": [64, 64],
                                  "tasks": [{"name": "a", "kind": "optical_flow"}]}, "t")
    with pytest.raises(RegistryError, match="unknown task kind 'optical_flow'; known: depth"):
        MultiTaskNet(cfg)


def test_set_changes_one_task_setting_and_names_bad_keys() -> None:
    from perception.commands.train import apply_overrides

    base = load_config("tiny")
    cfg = apply_overrides(base, ["tasks.depth.loss_weight=2.5", "adapter.rank=4"])
    assert cfg.task("depth").loss_weight == 2.5 and cfg.adapter.rank == 4
    assert [t.loss_weight for t in cfg.tasks if t.name != "depth"] == \
        [t.loss_weight for t in base.tasks if t.name != "depth"]
    assert base.task("depth").loss_weight == 1.0  # the original is not modified
    with pytest.raises(ConfigError, match=r"no task 'deph' in config 'tiny'; tasks: \['segmentation'"):
        apply_overrides(base, ["tasks.deph.loss_weight=2"])
    with pytest.raises(ConfigError, match=r"tasks\[1\]: unknown keys \['los_weight'\]"):
        apply_overrides(base, ["tasks.depth.los_weight=2"])
    with pytest.raises(ConfigError, match=r"'tasks.depth': expected tasks.NAME.KEY"):
        apply_overrides(base, ["tasks.depth=2"])
