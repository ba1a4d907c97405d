"""Training modes: which parameters train, and the parameter accounting behind ``tadp params``.

- ``base``: what the paper trains. TADFormer: shared LoRA, patch embedding, every LayerNorm,
  relative position bias, prompts, the base branch group (DTFs, prompt norms, up-projections,
  gates) and the decoders; the Swin weights and patch-merging reductions stay frozen. MTLoRA:
  shared and task LoRA, patch embedding, LayerNorms, relative position bias, the patch-merging
  reductions and the decoders (spec §2.5). ``none``: decoders only.
- ``adapter``: one task's prompt, its own branch group (or task LoRA) and its decoder. The group's
  prompt up-projections stay as warm-started from the base group (shared, as in the paper).
- ``fusion``: one fusion task's fusion layers and decoder.
- ``decoders``: every decoder, nothing else.   ``full``: everything (full fine-tuning).
"""
from __future__ import annotations

import hashlib
import re
from collections import OrderedDict

import torch
from torch import nn

from perception.errors import ConfigError
from perception.models.network import BASE_GROUP, MultiTaskNet

__all__ = ["MODES", "component_of", "set_trainable", "trainable_names", "parameter_report",
           "state_checksums", "train_scope"]

MODES = ("base", "adapter", "fusion", "decoders", "full")

_COMPONENTS: tuple[tuple[str, str], ...] = (
    (r"^encoder\.patch_embed\.", "patch_embed"),
    (r"^encoder\..*\.lora_[AB]$", "shared_lora"),
    (r"^encoder\..*relative_position_bias_table$", "rel_pos_bias"),
    (r"^encoder\..*downsample\.reduction\.", "merging_reduction"),
    (r"^encoder\..*(norm1|norm2|downsample\.norm)\.", "layer_norms"),
    (r"^encoder\.", "swin_weights"),
    (r"^groups\.[^.]+\.prompt_norms\.", "prompt_norms"),
    (r"^groups\.[^.]+\.dtf\.", "dtf"),
    (r"^groups\.[^.]+\.prompt_gates$", "gates"),
    (r"^groups\.[^.]+\.prompt_up\.", "prompt_up"),
    (r"^tasks\.[^.]+\.prompt\.", "prompts"),
    (r"^tasks\.[^.]+\.task_lora\.", "task_lora"),
    (r"^tasks\.[^.]+\.fusion\.", "fusion"),
    (r"^tasks\.[^.]+\.decoder\.", "decoders"),
)


def component_of(name: str) -> str:
    for pattern, comp in _COMPONENTS:
        if re.search(pattern, name):
            return comp
    return "other"


def _owner(name: str) -> str | None:
    """The task (``tasks.X``) or branch group (``groups.X``) a parameter belongs to."""
    m = re.match(r"^(tasks|groups)\.([^.]+)\.", name)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def trainable_names(model: MultiTaskNet, mode: str, task: str | None = None) -> set[str]:
    """Names of the parameters a mode trains (pure; does not touch the model)."""
    if mode not in MODES:
        raise ConfigError(f"unknown training mode {mode!r}; valid: {MODES}")
    names = [n for n, _ in model.named_parameters()]
    if mode == "full":
        return set(names)
    if mode == "decoders":
        return {n for n in names if component_of(n) == "decoders"}
    if mode in ("adapter", "fusion"):
        if task is None or task not in model.tasks:
            raise ConfigError(f"mode {mode!r} needs --task, one of {model.task_names()}")
        head = model.tasks[task]
        if mode == "fusion" and not head.is_fusion:
            raise ConfigError(f"task {task!r} is not a fusion task; use mode 'adapter'")
        if mode == "adapter" and head.is_fusion:
            raise ConfigError(f"task {task!r} is a fusion task; use mode 'fusion'")
        if mode == "adapter" and model.variant == "tadformer" and head.group == BASE_GROUP:
            raise ConfigError(f"task {task!r} shares the base branch group; adapter training "
                              "needs a task added with its own group (add_task(own_group=True))")
        owners = {f"tasks.{task}"} | ({f"groups.{head.group}"} if mode == "adapter" else set())
        # The paper shares the prompt up-projections across tasks: a new task keeps its group's
        # copy of the base group's (warm start) frozen. That is 43k of a tiny task's 78k.
        return {n for n in names if _owner(n) in owners and component_of(n) != "prompt_up"}
    # base
    base_tasks = {f"tasks.{t}" for t, h in model.tasks.items()
                  if h.group == BASE_GROUP and not h.is_fusion}
    if model.variant == "none":
        return {n for n in names if component_of(n) == "decoders" and _owner(n) in base_tasks}
    trunk = {"patch_embed", "shared_lora", "rel_pos_bias", "layer_norms"}
    if model.variant == "mtlora":
        trunk.add("merging_reduction")
    out = set()
    for n in names:
        comp, owner = component_of(n), _owner(n)
        if comp in trunk or owner == f"groups.{BASE_GROUP}" or owner in base_tasks:
            out.add(n)
    return out


def set_trainable(model: MultiTaskNet, mode: str, task: str | None = None) -> set[str]:
    """Set ``requires_grad`` for a mode; returns the trainable names."""
    keep = trainable_names(model, mode, task)
    for n, p in model.named_parameters():
        p.requires_grad_(n in keep)
    return keep


def train_scope(model: MultiTaskNet, mode: str, task: str | None = None) -> None:
    """Put only the trained parts in train mode, so frozen BatchNorm statistics never move."""
    model.eval()
    if mode == "full":
        model.train()
    elif mode == "decoders":
        for head in model.tasks.values():
            head.decoder.train()
    elif mode in ("adapter", "fusion"):
        model.tasks[task].train()
        if mode == "adapter" and model.tasks[task].group in model.groups:
            model.groups[model.tasks[task].group].train()
    else:
        model.encoder.train()
        for head in model.tasks.values():
            if head.group == BASE_GROUP and not head.is_fusion:
                head.train()
        if BASE_GROUP in model.groups:
            model.groups[BASE_GROUP].train()


def parameter_report(model: MultiTaskNet, mode: str = "base", task: str | None = None
                     ) -> dict[str, dict[str, int]]:
    """``{component: {"total": n, "trainable": n}}`` plus a ``"all"`` row."""
    keep = trainable_names(model, mode, task)
    rows: dict[str, dict[str, int]] = OrderedDict()
    for n, p in model.named_parameters():
        row = rows.setdefault(component_of(n), {"total": 0, "trainable": 0})
        row["total"] += p.numel()
        row["trainable"] += p.numel() if n in keep else 0
    rows["all"] = {"total": sum(r["total"] for r in rows.values()),
                   "trainable": sum(r["trainable"] for r in rows.values())}
    return dict(rows)


def state_checksums(module: nn.Module) -> dict[str, str]:
    """sha256 of every parameter and buffer, for freeze proofs."""
    out = {}
    for n, t in module.state_dict().items():
        data = t.detach().cpu().contiguous().reshape(-1)
        out[n] = hashlib.sha256(data.view(torch.uint8).numpy().tobytes()).hexdigest()
    return out
