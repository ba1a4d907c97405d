"""Trunk and task-slot programs: the modules every backend compiles.

The trunk is compiled once per model and input size. It returns a flat tuple: the four stage
outputs, then per block the windowed keys/values, then per stage the last block's intermediate
products (``BlockTrace``). A *slot* is one task's branch + decoder written as a pure function of
(trunk tensors, task weights): the weights are graph **inputs**, not constants. One compiled slot
serves every task with the same structure (adapter kind, decoder width, number of fusion sources),
so adding, replacing or removing a task never rebuilds or refits anything - it only changes the
arrays fed to an already-built graph (DESIGN §4).
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn

from perception.models.network import MultiTaskNet
from perception.models.swin import BlockTrace, SwinEncoder
from perception.models.tadformer import mtlora_branch, tadformer_branch

__all__ = ["TrunkProgram", "SlotProgram", "SlotKey", "slot_key_of", "task_weights",
           "trunk_layout", "PROGRAM_VERSION"]

# Part of every on-disk cache key of exported/compiled programs: bump it whenever the trunk or slot
# graphs change (outputs, layouts or the ops that compute them), so a warm start never loads a
# program built from older code for the same weights.
PROGRAM_VERSION = 4

_LAST_FIELDS = ("x", "o", "pre_proj", "x1", "pre_fc1", "hidden", "pre_fc2")


@contextmanager
def bound(module: nn.Module, params: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Temporarily replace ``module``'s parameters/buffers by the given tensors (dotted names).

    ``torch.func.functional_call`` does the same but refuses to run under the TorchScript tracer,
    whose ONNX exporter is ~5x faster on these graphs than the dynamo one."""
    saved = []
    try:
        for name, value in params.items():
            owner_name, _, attr = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            table = owner._parameters if attr in owner._parameters else owner._buffers
            if attr not in table:
                raise KeyError(f"{name!r} is not a parameter or buffer of the slot template")
            saved.append((table, attr, table[attr]))
            table[attr] = value
        yield module
    finally:
        for table, attr, old in reversed(saved):
            table[attr] = old


def functional_call(module: nn.Module, params: Mapping[str, torch.Tensor], args: tuple):
    with bound(module, params):
        return module(*args)


def trunk_layout(encoder: SwinEncoder) -> list[str]:
    """Names of the trunk outputs, in order."""
    names = [f"stage{s}" for s in range(4)]
    for s, stage in enumerate(encoder.layers):
        for j in range(len(stage.blocks)):
            names += [f"s{s}b{j}.k", f"s{s}b{j}.v"]
    for s in range(4):
        names += [f"s{s}.{f}" for f in _LAST_FIELDS]
    return names


class TrunkProgram(nn.Module):
    """The shared encoder as a flat-output module (what backends export/compile once)."""

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.traced = model.variant != "none"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats, traces = self.encoder(images, trace=self.traced)
        out = list(feats)
        if not self.traced:
            return tuple(out)
        for stage in traces:
            for bt in stage:
                out += [bt.k, bt.v]
        for stage in traces:
            bt = stage[-1]
            out += [getattr(bt, f) for f in _LAST_FIELDS]
        return tuple(out)


def unflatten_trunk(encoder: SwinEncoder, flat: tuple[torch.Tensor, ...], height: int, width: int
                    ) -> tuple[list[torch.Tensor], list[list[BlockTrace]]]:
    """Rebuild (stage features, traces) from :class:`TrunkProgram` outputs."""
    feats = list(flat[:4])
    if len(flat) == 4:
        return feats, []
    i = 4
    traces: list[list[BlockTrace]] = []
    h, w = height // 4, width // 4
    for s, stage in enumerate(encoder.layers):
        if s > 0:
            h, w = h // 2, w // 2
        row = []
        for block in stage.blocks:
            row.append(BlockTrace(geometry=block.geometry(h, w), k=flat[i], v=flat[i + 1]))
            i += 2
        traces.append(row)
    for s in range(4):
        for f in _LAST_FIELDS:
            setattr(traces[s][-1], f, flat[i])
            i += 1
    return feats, traces


@dataclass(frozen=True)
class SlotKey:
    """Slots with equal keys share one compiled graph."""

    adapter: str  # "tadformer" | "mtlora" | "none" | "fusion"
    out_channels: int
    num_sources: int = 0

    def tag(self) -> str:
        return f"{self.adapter}-k{self.out_channels}-s{self.num_sources}"


class _TaskModule(nn.Module):
    """The parameters of one task, laid out identically for every task of a slot key."""

    def __init__(self, model: MultiTaskNet, name: str) -> None:
        super().__init__()
        head = model.tasks[name]
        self.head = copy.deepcopy(head)
        self.group = (copy.deepcopy(model.groups[head.group])
                      if model.variant == "tadformer" and not head.is_fusion else None)


def slot_key_of(model: MultiTaskNet, name: str) -> SlotKey:
    head = model.tasks[name]
    adapter = "fusion" if head.is_fusion else model.variant
    return SlotKey(adapter, head.kind.channels(head.cfg), len(head.sources))


def task_weights(model: MultiTaskNet, name: str) -> dict[str, torch.Tensor]:
    """One task's tensors under slot names (``head.*``, ``group.*``), detached."""
    head = model.tasks[name]
    out = {f"head.{k}": v.detach() for k, v in head.state_dict().items()}
    if model.variant == "tadformer" and not head.is_fusion:
        out.update({f"group.{k}": v.detach() for k, v in model.groups[head.group].state_dict().items()})
    return out


class SlotProgram(nn.Module):
    """``forward(*trunk_outputs, *source_features, *weights)`` -> raw output [B, K, H/4, W/4]
    (``TaskKind.upsample`` to the input size is the engine's, outside the compiled graph).

    Built from a template task; any task with the same :class:`SlotKey` runs through it by
    passing its own weights (in :attr:`weight_names` order). Fusion slots also take the source
    tasks' stage features (4 per source) after the trunk outputs."""

    def __init__(self, model: MultiTaskNet, template: str, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.key = slot_key_of(model, template)
        self.encoder = model.encoder
        self.variant = model.variant
        self.hrnet = model.cfg.decoder.kind == "hrnet"
        self.size = image_size
        self.task = _TaskModule(model, template)
        weights = task_weights(model, template)
        self.weight_names = list(weights)
        self.num_trunk = len(trunk_layout(model.encoder)) if model.variant != "none" else 4
        structure = {"adapter": asdict(model.cfg.adapter), "decoder": asdict(model.cfg.decoder),
                     "weights": [[n, list(w.shape), str(w.dtype)] for n, w in weights.items()]}
        self.structure = hashlib.sha256(json.dumps(structure, sort_keys=True).encode()
                                        ).hexdigest()[:12]
        """What the graph computes beyond the trunk's weights (adapter and decoder settings, the
        weight layout): part of every compiled slot's cache key, with :meth:`SlotKey.tag`."""

    def _features(self, trunk, sources, params) -> list[torch.Tensor]:
        feats, traces = unflatten_trunk(self.encoder, trunk, *self.size)
        head = self.task.head
        if self.key.adapter == "fusion":
            fusion_params = {k[len("head.fusion."):]: v for k, v in params.items()
                             if k.startswith("head.fusion.")}
            return functional_call(head.fusion, fusion_params, (feats, sources))
        if self.key.adapter == "tadformer":
            prompt = {k[len("head.prompt."):]: v for k, v in params.items()
                      if k.startswith("head.prompt.")}
            group = {k[len("group."):]: v for k, v in params.items() if k.startswith("group.")}
            return _tadformer_functional(self.encoder, feats, traces, head.prompt, prompt,
                                         self.task.group, group)
        if self.key.adapter == "mtlora":
            lora = {k[len("head.task_lora."):]: v for k, v in params.items()
                    if k.startswith("head.task_lora.")}
            return functional_call(_MTLoRAWrapper(self.encoder, head.task_lora), {
                f"params.{k}": v for k, v in lora.items()}, (traces,))
        return feats

    def decode(self, feats: list[torch.Tensor], params: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.hrnet:
            layers = self.encoder.layers
            feats = [layers[s + 1].downsample(f) for s, f in enumerate(feats[:-1])] + [feats[-1]]
        dec = {k[len("head.decoder."):]: v for k, v in params.items()
               if k.startswith("head.decoder.")}
        return functional_call(self.task.head.decoder, dec, (feats,))  # the engine upsamples

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        trunk = args[: self.num_trunk]
        n_src = 4 * self.key.num_sources
        flat_src = args[self.num_trunk: self.num_trunk + n_src]
        sources = [list(flat_src[4 * i: 4 * i + 4]) for i in range(self.key.num_sources)]
        weights = args[self.num_trunk + n_src:]
        params = dict(zip(self.weight_names, weights, strict=True))
        return self.decode(self._features(trunk, sources, params), params)

    def features_and_output(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Like ``forward`` but also returns the 4 stage features (for fusion consumers)."""
        trunk = args[: self.num_trunk]
        n_src = 4 * self.key.num_sources
        flat_src = args[self.num_trunk: self.num_trunk + n_src]
        sources = [list(flat_src[4 * i: 4 * i + 4]) for i in range(self.key.num_sources)]
        params = dict(zip(self.weight_names, args[self.num_trunk + n_src:], strict=True))
        feats = self._features(trunk, sources, params)
        return (self.decode(feats, params), *feats)


class _MTLoRAWrapper(nn.Module):
    def __init__(self, encoder: SwinEncoder, params: nn.Module) -> None:
        super().__init__()
        self.encoder_ref = [encoder]  # not a submodule: its weights stay constants
        self.params = params

    def forward(self, traces: list[list[BlockTrace]]) -> list[torch.Tensor]:
        return mtlora_branch(self.encoder_ref[0], traces, self.params)


class _TadWrapper(nn.Module):
    def __init__(self, encoder: SwinEncoder, prompt: nn.Module, group: nn.Module) -> None:
        super().__init__()
        self.encoder_ref = [encoder]
        self.prompt = prompt
        self.group = group

    def forward(self, feats: list[torch.Tensor], traces: list[list[BlockTrace]]
                ) -> list[torch.Tensor]:
        return tadformer_branch(self.encoder_ref[0], feats, traces, self.prompt, self.group)


def _tadformer_functional(encoder, feats, traces, prompt_mod, prompt_params, group_mod,
                          group_params):
    wrapper = _TadWrapper(encoder, prompt_mod, group_mod)
    params = {f"prompt.{k}": v for k, v in prompt_params.items()}
    params.update({f"group.{k}": v for k, v in group_params.items()})
    return functional_call(wrapper, params, (feats, traces))
