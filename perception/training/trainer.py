"""The training loop shared by ``tadp train`` (base multi-task) and ``tadp train-task`` (one new
task on a frozen model): AdamW with a linear warm-up + cosine schedule, optional bf16 autocast,
validation every epoch through :func:`perception.evaluation.evaluate.evaluate`, resumable
checkpoints, a tqdm bar, and ``torchrun`` support (DistributedSampler, DDP, rank-0 logging).

Checkpoints never pickle: ``model.safetensors`` (the trained tensors), ``optimizer.safetensors``
(AdamW moments) and ``state.json`` (step, scheduler, optimizer hyper-parameters, best loss).

The freeze proof of adapter/fusion training is :mod:`perception.training.freeze`.
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from perception.data.augment import Augment, AugmentConfig, Resize
from perception.data.sample import collate
from perception.errors import ConfigError, DataError, PerceptionError
from perception.evaluation.evaluate import evaluate, normalize_images
from perception.models.network import BASE_GROUP, MultiTaskNet
from perception.training.freeze import owned_prefixes
from perception.training.losses import MultiTaskLoss, target_key
from perception.training.modes import set_trainable, train_scope
from perception.training.pause import PauseOnSignal, worker_signals
from perception.training.run_dir import RunDir, read_json, write_json

__all__ = ["TrainConfig", "Trainer", "lr_factor", "DistInfo", "init_distributed"]


# Never decayed (timm's Swin ``no_weight_decay``, plus our prompts): pulling them to 0 is meaningless.
_NO_DECAY_SUFFIXES = ("relative_position_bias_table", "prompt.prompt", "absolute_pos_embed")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (saved to ``train.json``). ``max_steps`` stops early and sets the
    schedule length; otherwise the run is ``epochs`` full passes."""

    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float | None = 1.0
    uncertainty: bool = False
    bf16: bool = False
    augment: bool = True
    seed: int = 0
    workers: int = 0
    val_batch_size: int = 4
    val_every: int = 1  # epochs; 0 = never
    val_at_start: bool = True  # a step-0 point on the curves (the untrained baseline)
    checkpoint_every: int = 0  # steps between extra checkpoints; 0 = at epoch ends only
    log_every: int = 1  # steps between history records
    progress: bool = True

    def __post_init__(self) -> None:
        checks = {"epochs": self.epochs >= 1, "batch_size": self.batch_size >= 1, "lr": self.lr > 0,
                  "weight_decay": self.weight_decay >= 0, "warmup_steps": self.warmup_steps >= 0,
                  "min_lr_ratio": 0 <= self.min_lr_ratio <= 1, "workers": self.workers >= 0,
                  "val_batch_size": self.val_batch_size >= 1, "val_every": self.val_every >= 0,
                  "checkpoint_every": self.checkpoint_every >= 0, "log_every": self.log_every >= 1,
                  "max_steps": self.max_steps is None or self.max_steps >= 1,
                  "grad_clip": self.grad_clip is None or self.grad_clip > 0}
        if bad := [k for k, ok in checks.items() if not ok]:
            raise ConfigError(f"invalid training settings: {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")


# -- schedule ------------------------------------------------------------------------------------
def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class _Schedule:
    """Picklable lr lambda (``LambdaLR`` stores no state of plain functions; we save ours)."""

    def __init__(self, total: int, warmup: int, min_ratio: float) -> None:
        self.total, self.warmup, self.min_ratio = total, min(warmup, max(0, total - 1)), min_ratio

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total, self.warmup, self.min_ratio)


# -- distributed ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.startswith("cuda"):
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        # Long timeout: the other ranks wait in a barrier while rank 0 validates and checkpoints.
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo",
                                timeout=timedelta(hours=2))
    return info


# -- data ----------------------------------------------------------------------------------------
class _Transformed(Dataset):
    """Apply ``fn`` to each sample of ``base`` (augmentation lives here, not in the readers)."""

    def __init__(self, base: Dataset, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.base, self.fn = base, fn

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.fn(self.base[index])


class _Skip(Sampler):
    """The indices of ``sampler`` from position ``start`` on (resuming mid-epoch)."""

    def __init__(self, sampler: Sampler, start: int) -> None:
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[int]:
        return islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.start)  # type: ignore[arg-type]


def _reseed_worker(worker_id: int) -> None:
    worker_signals()
    info = torch.utils.data.get_worker_info()
    fn = getattr(info.dataset, "fn", None)
    if isinstance(fn, Augment):
        fn.reseed(info.seed % 2**32)


def _check_labels(dataset: Dataset, tasks: list[Any]) -> None:
    """Fail early when the data labels none of the trained tasks; warn about the ones it lacks.

    Looks at the first sample only (datasets here label the same tasks in every frame)."""
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError("the training set is empty")
    keys = set(dataset[0]) - {"image", "meta"}
    missing = [t.name for t in tasks if target_key(t) not in keys]
    if len(missing) == len(tasks):
        raise DataError(f"the training set labels none of the trained tasks {missing} (its samples have "
                        f"{sorted(keys)}); a 'mask' task reads the label named like the task, e.g. 'corridor'")
    if missing:
        warnings.warn(f"the training set has no labels for {missing}; those tasks get no gradient",
                      stacklevel=3)


# -- checkpoints ---------------------------------------------------------------------------------
def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> dict[str, Any]:
    """Tensors to ``path`` (safetensors); returns the JSON-able rest of the state dict."""
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    save_file(tensors, str(path))
    return {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, path: Path, rest: Mapping[str, Any]) -> None:
    from safetensors.torch import load_file

    state: dict[int, dict[str, Any]] = {}
    for name, value in list(load_file(str(path)).items()) + list(rest["scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in rest["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


# -- the trainer ---------------------------------------------------------------------------------
class Trainer:
    """Train ``model`` in a training mode of :mod:`perception.training.modes`.

    Args:
        model: the network (already holding the new task for ``adapter``/``fusion`` modes).
        train_set, val_set: datasets of raw samples (common format); ``val_set`` may be None.
        cfg: optimisation settings.
        run: the run directory (rank 0 writes it; None = write nothing, e.g. in tests).
        mode, task: what trains (``base`` = the paper's base set; ``adapter``/``fusion`` = ``task``;
            ``full`` with a ``task`` = every weight on that task's loss alone).
        augment: augmentation settings for the training set (when ``cfg.augment``).
        device: ``cpu`` or ``cuda``.
        dist_info: from :func:`init_distributed` (default: single process).

    Raises:
        ConfigError: bad mode/task. DataError: fewer samples per rank than one batch.
    """

    def __init__(self, model: MultiTaskNet, train_set: Dataset, val_set: Dataset | None, cfg: TrainConfig,
                 run: RunDir | None = None, *, mode: str = "base", task: str | None = None,
                 augment: AugmentConfig | None = None, device: str = "cpu",
                 dist_info: DistInfo | None = None) -> None:
        self.model, self.cfg, self.run, self.mode, self.task = model, cfg, run, mode, task
        self.dist = dist_info or DistInfo()
        self.device = torch.device(f"cuda:{self.dist.local_rank}" if device.startswith("cuda") and self.dist.world > 1
                                   else device)
        self.trainable = set_trainable(model, mode, task)
        if not self.trainable:
            raise ConfigError(f"mode {mode!r} leaves nothing to train in this model")
        if mode in ("adapter", "fusion") or (mode == "full" and task is not None):
            self.tasks = [task]  # full + task: the whole model fine-tuned on one task (a baseline)
        else:
            self.tasks = [n for n, h in model.tasks.items() if h.group == BASE_GROUP and not h.is_fusion]
        model.to(self.device)
        self.loss = MultiTaskLoss([model.tasks[t].cfg for t in self.tasks], cfg.uncertainty).to(self.device)
        size = tuple(model.cfg.input_size)
        fn = Augment(augment or AugmentConfig(), size, seed=cfg.seed * 1009 + self.dist.rank) if cfg.augment \
            else Resize(size)
        _check_labels(train_set, [model.tasks[t].cfg for t in self.tasks])
        self.train_set = _Transformed(train_set, fn)
        self.val_set = val_set
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.dist.world, rank=self.dist.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise DataError(f"the training set has {len(self.train_set)} samples ({len(self.sampler)} per rank on "
                            f"{self.dist.world} ranks), fewer than one batch of {cfg.batch_size}; "
                            "lower --batch-size or add data")
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.optimizer = self._optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _Schedule(self.total_steps, cfg.warmup_steps, cfg.min_lr_ratio))
        self.step = 0
        self.paused_by: str | None = None  # the signal that paused the last fit(), if any
        self.best_val: float | None = None
        self._restored_rng: dict[str, Any] | None = None
        self._extra = self._extra_loss()
        self.net: torch.nn.Module = model
        if self.dist.world > 1:
            # Every trained task's loss reaches its whole head (absent labels add 0 * output), so
            # only "full" mode over a model with added tasks leaves trainable tensors unused.
            unused = mode == "full" and set(self.tasks) != set(model.tasks)
            self.net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=unused)

    def _optimizer(self) -> torch.optim.AdamW:
        """AdamW; no weight decay on norms, biases, gates, prompts-as-vectors and loss log-variances."""
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            if n in self.trainable:
                skip = p.ndim < 2 or n.endswith(_NO_DECAY_SUFFIXES)
                (no_decay if skip else decay).append(p)
        no_decay += list(self.loss.parameters())
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=self.cfg.lr)

    def _extra_loss(self) -> Callable[[], torch.Tensor] | None:
        """AdapterFusion's value regulariser (Pfeiffer et al.) when training a fusion task."""
        if self.mode == "fusion":
            head = self.model.tasks[self.task]
            return head.fusion.regularization
        return None

    # -- checkpoints -----------------------------------------------------------------------------
    def _checkpoint_keys(self) -> list[str]:
        keys = list(self.model.state_dict())
        if self.mode in ("adapter", "fusion"):
            return [k for k in keys if k.startswith(owned_prefixes(self.task))]
        return keys

    def save_checkpoint(self, name: str = "last") -> Path | None:
        """Write ``RUN/checkpoints/<name>/`` atomically (rank 0 only)."""
        if self.run is None or not self.dist.main:
            return None
        from safetensors.torch import save_file

        final = self.run.checkpoints / name
        tmp = self.run.checkpoints / f".{name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        sd = self.model.state_dict()
        save_file({k: sd[k].detach().cpu().contiguous() for k in self._checkpoint_keys()},
                  str(tmp / "model.safetensors"))
        if self.mode not in ("adapter", "fusion"):  # a whole model: load_model_from can read it
            (tmp / "config.yaml").write_text(yaml.safe_dump(self.model.cfg.to_dict(), sort_keys=False),
                                             encoding="utf-8")
        opt_rest = _save_optimizer(self.optimizer, tmp / "optimizer.safetensors")
        fn = self.train_set.fn
        rng = {"torch": torch.get_rng_state().tolist(),  # exact mid-epoch resume (with workers == 0)
               "augment": fn.rng.bit_generator.state if isinstance(fn, Augment) else None}
        write_json(tmp / "state.json", {
            "step": self.step, "mode": self.mode, "task": self.task, "best_val": self.best_val,
            "scheduler": self.scheduler.state_dict(), "optimizer": opt_rest,
            "loss_log_vars": {k: float(v.detach()) for k, v in self.loss.log_vars.items()},
            "train": asdict(self.cfg), "rng": rng})
        # The resume point carries the history, written before it: a run killed without
        # unwinding (SIGKILL, the OOM killer) resumes with no gap in history.json.
        if name == "last":
            self.run.save()
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model tensors, optimizer, scheduler, loss weights and the step counter.

        Raises:
            ConfigError: not a checkpoint of this mode/task. CheckpointError: tensors do not fit.
        """
        from safetensors.torch import load_file

        from perception.errors import CheckpointError

        path = Path(path)
        if (path / "checkpoints" / "last").is_dir():
            path = path / "checkpoints" / "last"
        if not (path / "state.json").is_file():
            raise ConfigError(f"{str(path)!r} is not a training checkpoint (no state.json): nothing to resume; "
                              "drop --resume to start a new run")
        state = read_json(path / "state.json")
        if (state["mode"], state["task"]) != (self.mode, self.task):
            raise ConfigError(f"checkpoint {str(path)!r} was saved in mode {state['mode']!r} task {state['task']!r}, "
                              f"not mode {self.mode!r} task {self.task!r}")
        tensors = load_file(str(path / "model.safetensors"))
        want = set(self._checkpoint_keys())
        if set(tensors) != want:
            raise CheckpointError(f"checkpoint {str(path)!r} does not fit the model: missing "
                                  f"{sorted(want - set(tensors))[:5]}, unexpected {sorted(set(tensors) - want)[:5]}")
        own = self.model.state_dict()
        with torch.no_grad():
            for k, v in tensors.items():
                if own[k].shape != v.shape:
                    raise CheckpointError(f"checkpoint tensor {k}: {tuple(v.shape)} vs model {tuple(own[k].shape)}")
                own[k].copy_(v)
            for k, v in state["loss_log_vars"].items():
                self.loss.log_vars[k].fill_(v)
        _load_optimizer(self.optimizer, path / "optimizer.safetensors", state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.best_val = int(state["step"]), state["best_val"]
        self._restored_rng = state.get("rng")
        if self.run is not None:
            self.run.truncate(self.step)

    # -- loop ------------------------------------------------------------------------------------
    def _loader(self, epoch: int, skip: int) -> DataLoader:
        """This epoch's batches. Every random stream (order, augmentation, dropout) is seeded from
        (seed, epoch, rank), so a run resumed at an epoch boundary is bit-identical to one that
        never stopped. Mid-epoch checkpoints also save the torch and augmentation streams: exact
        with ``workers == 0``; with workers the batches are right but their augmentation differs."""
        self.sampler.set_epoch(epoch)
        stream = self.cfg.seed * 1_000_003 + epoch * 1009 + self.dist.rank
        torch.manual_seed(stream)
        fn = self.train_set.fn
        if isinstance(fn, Augment):  # workers reseed themselves; this covers workers == 0
            fn.reseed(stream)
        if skip and self._restored_rng:  # mid-epoch resume: continue the saved streams
            torch.set_rng_state(torch.tensor(self._restored_rng["torch"], dtype=torch.uint8))
            if isinstance(fn, Augment) and self._restored_rng.get("augment"):
                fn.rng.bit_generator.state = self._restored_rng["augment"]
        self._restored_rng = None
        g = torch.Generator().manual_seed(self.cfg.seed * 7919 + epoch)
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=_Skip(self.sampler, skip),
                          num_workers=self.cfg.workers, collate_fn=collate, drop_last=True,
                          worker_init_fn=_reseed_worker, generator=g)

    def _train_step(self, batch: Mapping[str, Any]) -> dict[str, float]:
        images = normalize_images(batch["image"].to(self.device, non_blocking=True))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16):
            raw = self.net(images, self.tasks)
        extra = self._extra() if self._extra is not None else None
        total, parts = self.loss(raw, batch, extra)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self.dist.world > 1 and self.cfg.uncertainty:  # the loss module is outside DDP
            for p in self.loss.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.dist.world
        if self.cfg.grad_clip is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        if not math.isfinite(parts["loss"]):
            raise PerceptionError(f"training diverged: loss is {parts['loss']} at step {self.step} "
                                  f"(per task: {parts}); lower --lr or check the labels")
        return parts

    def validate(self, epoch: int) -> dict[str, Any]:
        """Validation losses and metrics on rank 0 ({} elsewhere or without a validation set)."""
        if self.val_set is None or not self.dist.main:
            return {}
        res = evaluate(self.model, self.val_set, tasks=self.tasks, batch_size=self.cfg.val_batch_size,
                       loss=self.loss, bf16=self.cfg.bf16, progress=False)
        return {"val": res.losses, "metrics": res.metrics, "val_seconds": round(res.seconds, 2)}

    def fit(self, resume_from: str | Path | None = None, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``total_steps`` (or pause at step ``stop_at``, checkpointed, for time-boxed jobs);
        returns the last epoch record (losses, metrics, timing). SIGTERM or Ctrl-C pauses too, at
        the end of the current step and checkpointed; :attr:`paused_by` then names the signal."""
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        end = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
        self.paused_by = None
        bar = None
        if self.cfg.progress and self.dist.main:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {self.mode}", unit="step",
                       dynamic_ncols=True)
        record: dict[str, Any] = {}
        if self.step == 0 and self.cfg.val_at_start and self.cfg.val_every:
            self._start_record()
        try:
            with PauseOnSignal(announce=self.dist.main) as pause:
                while self.step < end and self.paused_by is None:
                    record = self._epoch(end, pause, bar) or record
        finally:
            if bar is not None:
                bar.close()
            if self.run is not None and self.dist.main:
                self.run.save()
        return record

    def _epoch(self, end: int, pause: PauseOnSignal, bar: Any) -> dict[str, Any] | None:
        """Steps of the current epoch up to ``end``; its record when the epoch ends."""
        epoch, skip = divmod(self.step, self.steps_per_epoch)
        train_scope(self.model, self.mode, self.task)
        sums: dict[str, float] = {}
        n, t0 = 0, time.perf_counter()
        for batch in self._loader(epoch, skip * self.cfg.batch_size):
            t_step = time.perf_counter()
            parts = self._train_step(batch)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if self.run is not None and self.dist.main and self.step % self.cfg.log_every == 0:
                self.run.log_step({"step": self.step, "epoch": epoch, "lr": self.scheduler.get_last_lr()[0],
                                   "train": parts, "seconds": round(time.perf_counter() - t_step, 4)})
            if bar is not None:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items()} | {
                    "lr": f"{self.scheduler.get_last_lr()[0]:.1e}"})
            if self.step < end and self._pause_requested(pause):  # the last step just finishes
                break
            if self.cfg.checkpoint_every and self.step % self.cfg.checkpoint_every == 0:
                self.save_checkpoint()
            if self.step >= end:
                break
        if self.paused_by is None and (self.step % self.steps_per_epoch == 0
                                       or self.step >= self.total_steps):
            return self._end_epoch(epoch, sums, n, time.perf_counter() - t0, bar)
        self.save_checkpoint()  # paused mid-epoch (--stop-at or a signal)
        return None

    def _pause_requested(self, pause: PauseOnSignal) -> bool:
        """Whether any rank got a pause signal; every rank stops after the same step."""
        signum = pause.signum or 0
        if self.dist.world > 1:
            flag = torch.tensor([signum], dtype=torch.int64, device=self.device)  # nccl: on the GPU
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            signum = int(flag.item())
        if signum:
            self.paused_by = signal.Signals(signum).name
        return bool(signum)

    def _start_record(self) -> None:
        """Validation of the untrained model: the baseline every later point is compared with."""
        record = {"epoch": -1, "step": 0, "lr": 0.0, "train": {}, **self.validate(-1)}
        if self.dist.world > 1:
            dist.barrier()
        if self.run is not None and self.dist.main and "val" in record:
            self.run.log_epoch(record)

    def _end_epoch(self, epoch: int, sums: Mapping[str, float], n: int, seconds: float, bar: Any) -> dict[str, Any]:
        last = self.step >= self.total_steps
        record: dict[str, Any] = {"epoch": epoch, "step": self.step, "lr": self.scheduler.get_last_lr()[0],
                                  "train": {k: v / max(n, 1) for k, v in sums.items()},
                                  "seconds": round(seconds, 2), "s_per_step": round(seconds / max(n, 1), 4),
                                  "loss_weights": self.loss.weights()}
        if self.cfg.val_every and ((epoch + 1) % self.cfg.val_every == 0 or last):
            record.update(self.validate(epoch))
        if self.dist.world > 1:
            dist.barrier()  # other ranks wait for rank 0's validation and checkpoint
        if not self.dist.main or self.run is None:
            return record
        val_loss = record.get("val", {}).get("loss")
        if val_loss is not None and (self.best_val is None or val_loss < self.best_val):
            self.best_val = val_loss
            self.save_checkpoint("best")
        self.save_checkpoint("last")
        self.run.log_epoch(record)
        self.run.plot({t: self.model.tasks[t].cfg.kind for t in self.tasks})
        if bar is not None and "metrics" in record:
            bar.write(f"epoch {epoch}: val loss {val_loss:.4f}  " + "  ".join(
                f"{k}={v:.3f}" for k, v in record["metrics"].items() if _headline(k) and v is not None))
        return record

    def export(self, metrics: Mapping[str, Any] | None = None) -> Path | None:
        """Final weights of a base run: ``RUN/model.safetensors`` + ``RUN/model.yaml``
        (:func:`perception.training.model_file.save_model`) and ``RUN/metrics.json`` (rank 0)."""
        if self.run is None or not self.dist.main:
            return None
        from perception.training.model_file import save_model

        path = save_model(self.model, self.run.path / "model.safetensors")
        if metrics is not None:
            write_json(self.run.path / "metrics.json", metrics)
        return path


def _headline(key: str) -> bool:
    return key.split("/", 1)[-1] in ("miou", "iou", "abs_rel", "delta1", "miou_binary")
