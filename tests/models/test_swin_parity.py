"""Our Swin encoder equals the reference implementation on the same weights.

transformers' SwinModel stands in for timm (timm needs a torchvision that cannot import beside the
CPU torch wheel here); both implement the official Swin, and the developer guide accepts either.
Stage outputs are compared before patch merging, as timm's ``features_only`` returns them.
"""
from __future__ import annotations

import re

import pytest
import torch

from perception.config import EncoderConfig
from perception.models.checkpoint import load_swin_weights, to_timm_layout
from perception.models.swin import SwinEncoder

transformers = pytest.importorskip("transformers")


def _reference(h: int, w: int):
    torch.manual_seed(0)
    hf = transformers.SwinModel(transformers.SwinConfig(image_size=(h, w))).eval()
    with torch.no_grad():  # move every weight off its init so the check is not trivial
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return hf


def _reference_stages(hf, x: torch.Tensor) -> list[torch.Tensor]:
    got: list[torch.Tensor] = []
    hooks = [layer.blocks[-1].register_forward_hook(
        lambda m, i, o: got.append(o[0] if isinstance(o, tuple) else o))
        for layer in hf.encoder.layers]
    with torch.no_grad():
        hf(x)
    for hook in hooks:
        hook.remove()
    return got


@pytest.mark.parametrize("size", [(224, 224), (448, 672)], ids=["224x224", "448x672"])
def test_stage_outputs_match_reference(size: tuple[int, int]) -> None:
    hf = _reference(*size)
    enc = SwinEncoder(EncoderConfig()).eval()
    assert load_swin_weights(enc, hf.state_dict()) == "hf"
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(3))
    ref = _reference_stages(hf, x)
    with torch.no_grad():
        ours, _ = enc(x)
    assert len(ours) == 4
    for s, (a, b) in enumerate(zip(ref, ours, strict=False)):
        assert b.shape[-1] == 96 * 2**s
        err = (a - b.flatten(1, 2)).abs().max().item()
        assert err < 1e-5, f"stage {s + 1}: max abs error {err:.2e}"


def test_timm_and_official_layouts_load_identically() -> None:
    torch.manual_seed(1)
    src = SwinEncoder(EncoderConfig(embed_dim=32, num_heads=(1, 2, 4, 8))).eval()
    timm_sd = {k: v for k, v in src.state_dict().items()}
    timm_sd["head.fc.weight"] = torch.zeros(10, 256)  # a classifier head is dropped
    timm_sd["norm.weight"] = torch.ones(256)
    official = {re.sub(r"^layers\.(\d+)\.downsample",
                       lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k): v
                for k, v in timm_sd.items()}
    official = {"model": official}
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref, _ = src(x)
    for sd, layout in ((timm_sd, "timm"), (official["model"], "official")):
        enc = SwinEncoder(EncoderConfig(embed_dim=32, num_heads=(1, 2, 4, 8))).eval()
        assert to_timm_layout(sd)[1] == layout
        load_swin_weights(enc, sd)
        with torch.no_grad():
            out, _ = enc(x)
        assert all(torch.equal(a, b) for a, b in zip(ref, out, strict=False))


def test_checkpoint_file_round_trip(tmp_path) -> None:
    from safetensors.torch import save_file

    src = SwinEncoder(EncoderConfig(embed_dim=32, num_heads=(1, 2, 4, 8)))
    path = tmp_path / "swin.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    torch.save({"model": src.state_dict()}, tmp_path / "swin.pth")
    for p in (path, tmp_path / "swin.pth"):
        enc = SwinEncoder(EncoderConfig(embed_dim=32, num_heads=(1, 2, 4, 8)))
        load_swin_weights(enc, p)
        assert torch.equal(enc.layers[3].blocks[1].mlp.fc2.weight,
                           src.layers[3].blocks[1].mlp.fc2.weight)
