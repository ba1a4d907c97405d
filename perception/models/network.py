"""The multi-task network: one shared Swin trunk, per-task branches and decoders.

``MultiTaskNet(cfg)(images)`` returns raw decoder outputs per task ``{name: [B, K, H, W]}``.
Tasks can be added and removed on a live model (``add_task`` / ``remove_task``); thanks to task
isolation (see ``tadformer.py``) this never changes another task's output.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from perception.config import ModelConfig, TaskConfig
from perception.errors import ConfigError
from perception.models.decoders import build_decoder
from perception.models.fusion import AdapterFusion
from perception.models.swin import SwinEncoder
from perception.models.tadformer import (
    BranchParams,
    MTLoRATaskParams,
    TaskPrompt,
    mtlora_branch,
    tadformer_branch,
)
from perception.tasks import kind_of

__all__ = ["MultiTaskNet", "TaskHead", "BASE_GROUP"]

BASE_GROUP = "base"


class TaskHead(nn.Module):
    """Everything that belongs to one task: its prompt (TADFormer) or task LoRA (MTLoRA), or its
    fusion layer over source tasks, and its decoder. ``group`` names the :class:`BranchParams`
    it uses (TADFormer only)."""

    def __init__(self, cfg: TaskConfig, model_cfg: ModelConfig, group: str = BASE_GROUP,
                 sources: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.cfg, self.group, self.sources = cfg, group, tuple(sources)
        self.kind = kind_of(cfg)
        dims = model_cfg.encoder.stage_dims()
        variant = model_cfg.adapter.variant
        if self.sources:
            self.fusion = AdapterFusion(dims, model_cfg.adapter.fusion_key_dim)
        elif variant == "tadformer":
            self.prompt = TaskPrompt(dims[0])
        elif variant == "mtlora":
            self.task_lora = MTLoRATaskParams(model_cfg.encoder, model_cfg.adapter)
        self.decoder = build_decoder(model_cfg.decoder, dims, self.kind.channels(cfg))

    @property
    def is_fusion(self) -> bool:
        return bool(self.sources)


class MultiTaskNet(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = SwinEncoder(cfg.encoder, cfg.adapter)
        self.groups = nn.ModuleDict()
        if cfg.adapter.variant == "tadformer":
            self.groups[BASE_GROUP] = BranchParams(cfg.encoder, cfg.adapter)
        self.tasks = nn.ModuleDict()
        for t in cfg.tasks:
            self.tasks[t.name] = TaskHead(t, cfg)

    @property
    def variant(self) -> str:
        return self.cfg.adapter.variant

    def task_names(self) -> list[str]:
        return list(self.tasks)

    # -- adding and removing tasks -------------------------------------------------------------
    def add_task(self, cfg: TaskConfig, *, own_group: bool = True,
                 sources: tuple[str, ...] = ()) -> TaskHead:
        """Add a task. A TADFormer task gets its own :class:`BranchParams`, initialised from the
        base group (a warm start that is then trained in ``adapter`` mode, except the prompt
        up-projections, which stay the base group's as the paper shares them); a fusion task fuses
        the named ``sources``."""
        if cfg.name in self.tasks or cfg.name in self.groups and cfg.name != BASE_GROUP:
            raise ConfigError(f"task {cfg.name!r} already exists; tasks: {self.task_names()}")
        if cfg.name == BASE_GROUP:
            raise ConfigError(f"{BASE_GROUP!r} is reserved and cannot name a task")
        missing = [s for s in sources if s not in self.tasks]
        if missing:
            raise ConfigError(f"fusion sources {missing} are not tasks of this model "
                              f"({self.task_names()})")
        if any(self.tasks[s].is_fusion for s in sources):
            raise ConfigError("a fusion task cannot fuse another fusion task")
        group = BASE_GROUP
        if self.variant == "tadformer" and not sources and own_group:
            group = cfg.name
            self.groups[group] = (copy.deepcopy(self.groups[BASE_GROUP]) if BASE_GROUP in self.groups
                                  else BranchParams(self.cfg.encoder, self.cfg.adapter))
        head = TaskHead(cfg, self.cfg, group=group, sources=sources)
        head.to(next(self.encoder.parameters()).device)
        head.train(self.training)  # a head added to a model in eval mode must not use batch stats
        if group in self.groups:
            self.groups[group].train(self.training)
        self.tasks[cfg.name] = head
        return head

    def remove_task(self, name: str) -> TaskHead:
        if name not in self.tasks:
            raise ConfigError(f"no task {name!r}; tasks: {self.task_names()}")
        users = [t for t, h in self.tasks.items() if name in h.sources]
        if users:
            raise ConfigError(f"task {name!r} is fused by {users}; remove those first")
        head = self.tasks[name]
        del self.tasks[name]
        if head.group != BASE_GROUP and head.group in self.groups:
            del self.groups[head.group]
        return head

    def update_task(self, name: str, **changes: object) -> TaskConfig:
        """Change settings of a task that do not change its tensors (``loss_weight``,
        ``max_depth_m``, ``focal_px``); the head and ``cfg`` both see the new config."""
        if name not in self.tasks:
            raise ConfigError(f"no task {name!r}; tasks: {self.task_names()}")
        structural = sorted(set(changes) & {"name", "kind", "num_classes", "class_names", "subpixel"})
        if structural:
            raise ConfigError(f"update_task cannot change {structural} of {name!r}: they change "
                              "its tensors; build a new task instead")
        new = dataclasses.replace(self.tasks[name].cfg, **changes)
        self.tasks[name].cfg = new
        self.cfg = self.cfg.replace(tasks=[dataclasses.asdict(new) if t.name == name
                                           else dataclasses.asdict(t) for t in self.cfg.tasks])
        return new

    # -- forward ---------------------------------------------------------------------------------
    def _branch(self, name: str, feats: list[torch.Tensor], traces, cache: dict
                ) -> list[torch.Tensor]:
        if name in cache:
            return cache[name]
        head = self.tasks[name]
        if head.is_fusion:
            per_task = [self._branch(s, feats, traces, cache) for s in head.sources]
            out = head.fusion(feats, per_task)
        elif self.variant == "tadformer":
            out = tadformer_branch(self.encoder, feats, traces, head.prompt,
                                   self.groups[head.group])
        elif self.variant == "mtlora":
            out = mtlora_branch(self.encoder, traces, head.task_lora)
        else:
            out = feats
        cache[name] = out
        return out

    def _for_decoder(self, stage_feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.cfg.decoder.kind != "hrnet":
            return stage_feats
        # Paper layout: stages 1-3 leave through the (frozen) patch merging of the next stage.
        layers = self.encoder.layers
        return [layers[s + 1].downsample(f) for s, f in enumerate(stage_feats[:-1])] + [
            stage_feats[-1]]

    def forward(self, images: torch.Tensor, tasks: list[str] | None = None
                ) -> dict[str, torch.Tensor]:
        """``images`` [B, 3, H, W] normalised RGB -> raw outputs ``{task: [B, K, H, W]}``."""
        names = list(self.tasks) if tasks is None else list(tasks)
        unknown = [n for n in names if n not in self.tasks]
        if unknown:
            raise ConfigError(f"unknown tasks {unknown}; this model has {self.task_names()}")
        feats, traces = self.encoder(images, trace=self.variant != "none")
        size = (images.shape[-2], images.shape[-1])
        cache: dict[str, list[torch.Tensor]] = {}
        out = {}
        for n in names:
            head = self.tasks[n]
            raw = head.decoder(self._for_decoder(self._branch(n, feats, traces, cache)))
            out[n] = head.kind.upsample(raw, size, head.cfg)
        return out

    def postprocess(self, raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n: self.tasks[n].kind.postprocess(r, self.tasks[n].cfg) for n, r in raw.items()}

    def merge_lora(self) -> None:
        self.encoder.merge_lora()

    def unmerge_lora(self) -> None:
        self.encoder.unmerge_lora()
