"""Content integrity for task bundles and model files (DESIGN §3): fingerprints of the frozen
trunk and of one task, and reading/writing weight files without ever unpickling.

A fingerprint is the sha256 over a small JSON preamble (settings that change the function but are
not tensors, e.g. the LoRA scale) followed by every tensor in name order: its name, dtype, shape
and raw bytes. Equal fingerprints therefore mean bit-identical weights.

- :func:`trunk_fingerprint`: the encoder (frozen Swin + shared LoRA + LayerNorms ...), i.e. what
  every task is computed on. It is defined on *unmerged* LoRA weights: ``merge_lora`` adds
  ``scale * B @ A`` into the frozen weights in floating point, which is not bit-exactly
  reversible, so a merged model is refused. Compute the fingerprint before merging and keep it
  (the runtime does) when you need it later.
- :func:`task_fingerprint`: one task's own tensors (prompt / task LoRA / fusion, its decoder) plus
  the branch group it runs on (TADFormer). Names are taken relative to the task (``task.*``,
  ``group.*``), so the fingerprint identifies content, whatever the task is called and whether
  its group is ``base`` or its own. ``branch_only=True`` leaves the decoder out: that is all a
  fusion task depends on, so re-training a source task's decoder does not invalidate the fusion
  bundles built on it.

Weight files are safetensors only. :func:`refuse_pickle` rejects ``torch.save`` / pickle files by
suffix or signature before anything parses them; :func:`parse_safetensors` turns every parser
failure into one "corrupt" message; :func:`write_atomic` never leaves a partial file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from perception.errors import BundleError, PerceptionError

if TYPE_CHECKING:
    from perception.models.network import MultiTaskNet

__all__ = ["digest_tensors", "trunk_fingerprint", "task_fingerprint", "fingerprint_of",
           "task_tensors", "relative_tensors", "dtype_name", "cpu_copy", "tensor_index",
           "PICKLE_SUFFIXES", "refuse_pickle", "parse_safetensors", "write_atomic"]

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")

# Encoder settings that change its function at inference but are not tensors (or not only).
_TRUNK_ENCODER_KEYS = ("embed_dim", "depths", "num_heads", "window_size", "mlp_ratio",
                       "patch_size", "in_chans", "qkv_bias")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def digest_tensors(tensors: Iterable[tuple[str, torch.Tensor]],
                   preamble: Mapping[str, Any] | None = None) -> str:
    """sha256 (hex) over a JSON preamble and the sorted (name, dtype, shape, bytes) of tensors."""
    h = hashlib.sha256()
    head = json.dumps(dict(preamble or {}), sort_keys=True, separators=(",", ":")).encode()
    h.update(len(head).to_bytes(8, "little") + head)
    for name, t in sorted(tensors, key=lambda item: item[0]):
        data = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        meta = json.dumps([name, dtype_name(t.dtype), list(t.shape)]).encode()
        h.update(len(meta).to_bytes(8, "little") + meta)
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def trunk_fingerprint(model: MultiTaskNet) -> str:
    """Fingerprint of the shared encoder, LoRA unmerged.

    Raises:
        BundleError: the model's shared LoRA is merged (see the module docstring).
    """
    merged = [layer for layer in model.encoder.lora_layers() if layer.merged]
    if merged:
        raise BundleError(
            f"the trunk fingerprint is defined on unmerged LoRA weights, but {len(merged)} "
            "shared-LoRA layers of this model are merged (merging is not bit-exactly reversible); "
            "compute the fingerprint before model.merge_lora() and pass it as trunk_fp=..., or "
            "check bundles against an unmerged copy of the model")
    enc, ad = model.cfg.encoder, model.cfg.adapter
    preamble = {"what": "trunk",
                "encoder": {k: _plain(getattr(enc, k)) for k in _TRUNK_ENCODER_KEYS},
                "adapter": {"variant": ad.variant, "rank": ad.rank, "scale": ad.scale}}
    return digest_tensors(model.encoder.state_dict().items(), preamble)


def task_tensors(model: MultiTaskNet, name: str) -> dict[str, torch.Tensor]:
    """The state of a task as a bundle stores it: ``tasks.<name>.*`` and, for a TADFormer task with
    its own group, ``groups.<name>.*`` (full model names)."""
    head = _head(model, name)
    return _owned_state(model, name, name if _uses_group(model, name) and head.group == name else None)


def _owned_state(model: MultiTaskNet, name: str, group: str | None) -> dict[str, torch.Tensor]:
    """``tasks.<name>.*`` (+ ``groups.<group>.*``) exactly as ``model.state_dict()`` names them,
    read from the two submodules only: the whole model's state dict costs ~1.3 ms per call."""
    state = model.tasks[name].state_dict(prefix=f"tasks.{name}.")
    if group is not None:
        state.update(model.groups[group].state_dict(prefix=f"groups.{group}."))
    return state


def relative_tensors(tensors: Mapping[str, torch.Tensor], name: str, group: str | None
                     ) -> dict[str, torch.Tensor]:
    """Rename ``tasks.<name>.X`` -> ``task.X`` and ``groups.<group>.X`` -> ``group.X``; other
    keys are kept as they are (so they still change the digest)."""
    out = {}
    for k, v in tensors.items():
        if k.startswith(f"tasks.{name}."):
            k = "task." + k[len(f"tasks.{name}."):]
        elif group is not None and k.startswith(f"groups.{group}."):
            k = "group." + k[len(f"groups.{group}."):]
        out[k] = v
    return out


def task_fingerprint(model: MultiTaskNet, name: str, *, branch_only: bool = False) -> str:
    """Fingerprint of one task's own tensors and the branch group it runs on.

    Raises:
        BundleError: ``name`` is not a task of the model.
    """
    head = _head(model, name)
    group = head.group if _uses_group(model, name) else None
    return fingerprint_of(_owned_state(model, name, group), name, group, sources=head.sources,
                          branch_only=branch_only)


def fingerprint_of(tensors: Mapping[str, torch.Tensor], name: str, group: str | None, *,
                   sources: Iterable[str] = (), branch_only: bool = False) -> str:
    """:func:`task_fingerprint` of tensors held outside a model (a bundle's)."""
    rel = relative_tensors(tensors, name, group)
    if branch_only:
        rel = {k: v for k, v in rel.items() if not k.startswith("task.decoder.")}
    preamble = {"what": "task-branch" if branch_only else "task", "sources": list(sources)}
    return digest_tensors(rel.items(), preamble)


def _uses_group(model: MultiTaskNet, name: str) -> bool:
    return model.variant == "tadformer" and not model.tasks[name].is_fusion


def _head(model: MultiTaskNet, name: str):  # -> TaskHead
    if name not in model.tasks:
        raise BundleError(f"no task {name!r} in this model; tasks: {model.task_names()}")
    return model.tasks[name]


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def cpu_copy(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}


def tensor_index(tensors: Mapping[str, torch.Tensor]) -> dict[str, tuple[list[int], str]]:
    """``{key: (shape, dtype name)}``."""
    return {k: (list(v.shape), dtype_name(v.dtype)) for k, v in tensors.items()}


# -- weight files: safetensors only, never unpickled ---------------------------------------------
def refuse_pickle(path: Path, head: bytes, *, what: str, fix: str,
                  err_cls: type[PerceptionError]) -> None:
    """Refuse torch.save / pickle files by suffix or signature, before any parsing.

    ``head`` is the file's first 16 bytes. A safetensors file has ``{`` at byte 8 (after its
    8-byte header length), which rules out a false alarm on a header length starting 0x80.

    Raises:
        err_cls: the file is (or is named like) a pickle payload.
    """
    looks_safetensors = len(head) >= 9 and head[8:9] == b"{"
    reason = None
    if path.suffix.lower() in PICKLE_SUFFIXES:
        reason = f"its suffix {path.suffix!r} is a torch.save/pickle format"
    elif head[:4] == b"PK\x03\x04" and not looks_safetensors:
        reason = "it is a zip archive (the torch.save format)"
    elif head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") \
            and not looks_safetensors:
        reason = f"it starts with the pickle protocol-{head[1]} header"
    if reason:
        raise err_cls(f"{what} weights {str(path)!r} refused: {reason}. Pickle payloads are "
                      f"never loaded, because unpickling can run arbitrary code; re-export with "
                      f"{fix}")


def _safetensors_header(data: bytes) -> dict[str, Any]:
    """The JSON header of a safetensors blob (raises ValueError when it is not one)."""
    if len(data) < 8:
        raise ValueError(f"only {len(data)} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError(f"header length {n} exceeds the file size {len(data)} (truncated?)")
    try:
        header = json.loads(data[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"header is not JSON ({err})") from err
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return header


def parse_safetensors(data: bytes, path: Path, err_cls: type[PerceptionError]
                      ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors blob.

    Raises:
        err_cls: any parse failure, reported as a corrupt file with the parser's reason.
    """
    from safetensors.torch import load as st_load

    try:
        metadata = _safetensors_header(data).get("__metadata__") or {}
        tensors = st_load(data)
    except Exception as err:  # noqa: BLE001 - the parser's errors vary; all mean a bad file
        raise err_cls(f"weights file {str(path)!r} is corrupt: not a valid safetensors file "
                      f"({err})") from err
    return tensors, metadata


def write_atomic(target: Path, payload: bytes) -> None:
    """Write a file through a hidden temporary sibling and one rename: never a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the node may run as another user
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
