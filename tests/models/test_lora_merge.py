"""Shared LoRA: untrained adapters leave the frozen Swin exactly; merging is exact to 1e-5."""
from __future__ import annotations

import torch

from perception.config import AdapterConfig, EncoderConfig
from perception.models.network import MultiTaskNet
from perception.models.swin import SwinEncoder


def test_untrained_adapters_equal_the_frozen_swin_exactly(tiny_cfg) -> None:
    torch.manual_seed(0)
    with_lora = SwinEncoder(tiny_cfg.encoder, tiny_cfg.adapter).eval()
    plain = SwinEncoder(tiny_cfg.encoder, AdapterConfig(variant="none", rank=0)).eval()
    missing = plain.load_state_dict(with_lora.state_dict(), strict=False)
    assert not missing.missing_keys and all(".lora_" in k for k in missing.unexpected_keys)
    x = torch.randn(2, 3, 256, 512)
    with torch.no_grad():
        a, _ = with_lora(x)
        b, _ = plain(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=False))


def test_merged_equals_unmerged(tiny_model, image) -> None:
    with torch.no_grad():
        ref = tiny_model(image)
        tiny_model.merge_lora()
        merged_layers = [m for m in tiny_model.encoder.lora_layers() if m.merged]
        out = tiny_model(image)
        tiny_model.unmerge_lora()
        back = tiny_model(image)
    # Every layer but proj/fc1/fc2 of each stage's last block folds (those feed the task path).
    assert len(merged_layers) == len(tiny_model.encoder.lora_layers()) - 3 * 4
    for name in ref:
        assert (ref[name] - out[name]).abs().max() < 1e-5, name
        assert (ref[name] - back[name]).abs().max() < 1e-5, name
    assert any((ref[n] != out[n]).any() for n in ref)  # the merge really changed the arithmetic


def test_lora_changes_the_output_once_trained(tiny_cfg) -> None:
    torch.manual_seed(0)
    model = MultiTaskNet(tiny_cfg).eval()
    x = torch.randn(1, 3, 256, 512)
    with torch.no_grad():
        ref, _ = model.encoder(x)
        model.encoder.layers[0].blocks[0].attn.qkv.lora_B.normal_(std=0.1)
        new, _ = model.encoder(x)
    assert not torch.equal(ref[0], new[0])
    assert EncoderConfig  # imported for readers of this file: the encoder config is tiny's


def test_training_works_after_inference_mode(tiny_cfg) -> None:
    """Geometry constants cached during an inference_mode call must not be inference tensors
    (they would break autograd in a later training step of the same process)."""
    from perception.models import swin

    swin._CONSTANTS.clear()
    model = MultiTaskNet(tiny_cfg.replace(input_size=[64, 128]))
    x = torch.randn(1, 3, 64, 128)
    with torch.inference_mode():
        model(x)
    out = model(x)
    sum(v.float().mean() for v in out.values()).backward()
    assert model.encoder.layers[0].blocks[0].attn.qkv.lora_A.grad is not None
