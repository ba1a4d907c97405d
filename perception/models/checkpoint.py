"""Load Swin weights from a local file in timm, official Microsoft or Hugging Face layout.

No download code: users point at a file they have (``.pth``/``.pt`` via ``torch.load(weights_only=
True)``, which never unpickles arbitrary objects, or ``.safetensors``). Keys are mapped to our
timm-compatible names; anything missing or unexpected is listed in one clear error.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from perception.errors import CheckpointError

__all__ = ["read_state_dict", "to_timm_layout", "load_swin_weights", "detect_layout"]

# Keys of a classification checkpoint we deliberately drop: classifier head, final norm,
# buffers that we recompute (relative position index, attention masks).
_IGNORED = re.compile(
    r"^(head\.|head$|norm\.|layernorm\.|pooler\.|classifier\.)|relative_position_index$|attn_mask$"
)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file; unwraps the usual ``{"model": ...}`` / ``{"state_dict": ...}``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: object = load_file(str(path))
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {err}") from err
    for wrapper in ("model", "state_dict", "model_state"):
        if isinstance(data, Mapping) and wrapper in data and isinstance(data[wrapper], Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"checkpoint {str(path)!r} does not hold a flat tensor state dict")
    return dict(data)


def detect_layout(keys: list[str]) -> str:
    """``hf`` (transformers), ``official`` (microsoft/Swin-Transformer) or ``timm``."""
    if any(k.startswith(("embeddings.", "swin.embeddings.", "encoder.layers.")) for k in keys):
        return "hf"
    if any(k.startswith("layers.0.downsample.") for k in keys):
        return "official"
    return "timm"


def _hf_to_timm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        k = key.removeprefix("swin.")
        k = k.replace("embeddings.patch_embeddings.projection.", "patch_embed.proj.")
        k = k.replace("embeddings.norm.", "patch_embed.norm.")
        m = re.match(r"encoder\.layers\.(\d+)\.downsample\.(.*)", k)
        if m:
            out[f"layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}"] = value
            continue
        m = re.match(r"encoder\.layers\.(\d+)\.blocks\.(\d+)\.(.*)", k)
        if not m:
            out[k] = value
            continue
        prefix, rest = f"layers.{m.group(1)}.blocks.{m.group(2)}.", m.group(3)
        qm = re.match(r"attention\.(?:self\.)?(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)", rest)
        if qm:
            which = {"query": 0, "key": 1, "value": 2, "q_proj": 0, "k_proj": 1, "v_proj": 2}[qm.group(1)]
            qkv.setdefault(f"{prefix}attn.qkv.{qm.group(2)}", {})[str(which)] = value
            continue
        for src, dst in (
            ("layernorm_before.", "norm1."),
            ("layernorm_after.", "norm2."),
            ("attention.self.relative_position_bias_table", "attn.relative_position_bias_table"),
            ("attention.relative_position_bias.relative_position_bias_table",
             "attn.relative_position_bias_table"),
            ("attention.output.dense.", "attn.proj."),
            ("attention.o_proj.", "attn.proj."),
            ("intermediate.dense.", "mlp.fc1."),
            ("output.dense.", "mlp.fc2."),
            ("mlp.fc1.", "mlp.fc1."),
            ("mlp.fc2.", "mlp.fc2."),
        ):
            if rest.startswith(src):
                rest = dst + rest[len(src):]
                break
        out[prefix + rest] = value
    for key, parts in qkv.items():
        if set(parts) != {"0", "1", "2"}:
            raise CheckpointError(f"incomplete query/key/value set for {key!r}")
        out[key] = torch.cat([parts["0"], parts["1"], parts["2"]], dim=0)
    return out


def to_timm_layout(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Rename a state dict to our (timm) names; returns (state dict, detected layout)."""
    layout = detect_layout(list(sd))
    if layout == "hf":
        sd = _hf_to_timm(sd)
    elif layout == "official":
        sd = {re.sub(r"^layers\.(\d+)\.downsample",
                     lambda m: f"layers.{int(m.group(1)) + 1}.downsample", k): v
              for k, v in sd.items()}
    return {k: v for k, v in sd.items() if not _IGNORED.search(k)}, layout


def load_swin_weights(encoder: nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> str:
    """Copy Swin weights into ``encoder`` (a :class:`SwinEncoder`). LoRA tensors absent from a
    plain Swin checkpoint are expected; anything else missing, unexpected or mis-shaped raises
    :class:`CheckpointError` listing every offending key. Returns the detected layout."""
    where = str(source) if isinstance(source, (str, Path)) else "state dict"
    raw = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    sd, layout = to_timm_layout(raw)
    own = encoder.state_dict()
    expected = {k for k in own if ".lora_" not in k}
    missing = sorted(expected - set(sd))
    unexpected = sorted(k for k in sd if k not in own)
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(sd) & set(own)) if sd[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = [f"checkpoint {where} ({layout} layout) does not fit this Swin encoder"]
        if missing:
            parts.append(f"missing {len(missing)} keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {_short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch in {len(shapes)} tensors: {_short(shapes)}")
        parts.append("expected keys like " + _short(sorted(expected), 3))
        raise CheckpointError("; ".join(parts))
    with torch.no_grad():
        for k, v in sd.items():
            own[k].copy_(v.to(own[k].dtype))
    return layout


def _short(items: list[str], n: int = 8) -> str:
    head = ", ".join(items[:n])
    return head + (f" ... (+{len(items) - n} more)" if len(items) > n else "")
