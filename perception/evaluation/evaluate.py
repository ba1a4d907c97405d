"""The shared evaluation loop: a model on a dataset -> metrics (and losses) per task.

Used by ``tadp eval``, by the trainer's validation and (later) by bag replay, so every number
in this project comes from one code path. Protocol: frames are resized to the model input, raw
outputs are resized back to each label's own resolution (bilinear on logits / log-depth), then
post-processed and scored with :class:`~perception.evaluation.metrics.MetricSet`. Losses, when
asked for, are computed at the model input size on labels resized with nearest neighbour.

Also here: :func:`open_dataset` (``KIND:PATH[,key=value...]`` specs shared by the training and
evaluation commands) and :func:`normalize_images` (the model's input convention).
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from perception.config import TaskConfig
from perception.data.augment import Resize
from perception.data.sample import collate, sample_focal_px, sample_height_m
from perception.errors import ConfigError, DataError
from perception.evaluation.metrics import MetricSet
from perception.runtime.frames import MEAN_RGB, STD_RGB
from perception.tasks import kind_of
from perception.training.losses import MultiTaskLoss, target_key

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalize_images", "DATASET_KINDS", "open_dataset",
           "metric_specs", "EvalResult", "evaluate", "score_outputs",
           "metrics_markdown"]

# The runtime's input convention (ImageNet statistics, RGB), as fractions of 255: training,
# evaluation and the engine must normalise identically.
IMAGENET_MEAN = tuple(float(v) for v in MEAN_RGB / 255.0)
IMAGENET_STD = tuple(float(v) for v in STD_RGB / 255.0)
DATASET_KINDS = ("synthetic", "bdd100k", "cityscapes", "camvid", "tusimple", "kitti")


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] RGB in 0..1 -> ImageNet-normalised model input."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


# -- datasets ------------------------------------------------------------------------------------
def open_dataset(spec: str | Path, transform: Any = None, max_samples: int | None = None) -> Dataset:
    """A dataset in the common sample format from a spec ``[KIND:]PATH[,key=value...]``.

    Examples: ``synth_val`` (a synthetic dataset directory), ``cityscapes:/data/cs,split=val``,
    ``camvid:/data/camvid,split=test``, ``bdd100k:/bdd/images/100k/val,drivable=/bdd/labels/
    drivable/masks/val,lanes=/bdd/labels/lane/masks/val``, ``tusimple:/data/lanenet``,
    ``kitti:/data/kitti/training``.

    Raises:
        DataError: unknown kind, bad options, or a dataset that cannot be opened.
    """
    from perception.data import readers

    text = str(spec)
    kind, _, rest = text.partition(":")
    if kind not in DATASET_KINDS or not rest:
        kind, rest = "", text
    path, *opts = rest.split(",")
    options: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq or not key:
            raise DataError(f"dataset spec {text!r}: option {opt!r} is not key=value")
        options[key.strip()] = value.strip()
    if not kind:
        if (Path(path) / "dataset.json").is_file():
            kind = "synthetic"
        else:
            raise DataError(f"dataset spec {text!r}: {path!r} is not a synthetic dataset (no dataset.json); "
                            f"prefix the path with its kind, one of {', '.join(DATASET_KINDS)} "
                            "(e.g. cityscapes:/data/cityscapes,split=val)")
    allowed = {"synthetic": set(), "cityscapes": {"split"}, "camvid": {"split"}, "kitti": set(),
               "tusimple": {"json"}, "bdd100k": {"drivable", "lanes", "semseg", "panseg"}}[kind]
    if bad := sorted(set(options) - allowed):
        raise DataError(f"dataset spec {text!r}: unknown options {bad} for {kind}; valid: {sorted(allowed) or 'none'}")
    if kind == "synthetic":
        ds: Dataset = readers.SyntheticDataset(path, transform=transform)
    elif kind == "cityscapes":
        ds = readers.CityscapesDataset(path, split=options.get("split", "val"), transform=transform)
    elif kind == "camvid":
        ds = readers.CamVidDataset(path, split=options.get("split", "test"), transform=transform)
    elif kind == "kitti":
        ds = readers.KittiDepthDataset(path, transform=transform)
    elif kind == "tusimple":
        json_files = options["json"].split("+") if "json" in options else None
        ds = readers.TuSimpleDataset(path, json_files=json_files, transform=transform)
    else:
        ds = readers.BDD100KDataset(path, transform=transform, **options)
    if max_samples is not None and max_samples < len(ds):
        if max_samples < 1:
            raise DataError(f"max_samples must be >= 1, got {max_samples}")
        ds = Subset(ds, range(max_samples))
    return ds


def metric_specs(tasks: Sequence[TaskConfig]) -> dict[str, dict[str, Any]]:
    """``MetricSet`` specs for the tasks that have a metric (surface normals have none yet)."""
    out: dict[str, dict[str, Any]] = {}
    for t in tasks:
        kind = kind_of(t)
        names = list(kind.class_names(t))
        if t.kind == "depth":
            out[t.name] = {"kind": "depth", "max_depth": t.max_depth_m}
        elif t.kind == "drivable" and len(names) == 3:
            out[t.name] = {"kind": "drivable"}
        elif t.kind == "lanes" and len(names) == 2:
            out[t.name] = {"kind": "lanes"}
        elif t.kind in ("mask", "saliency"):
            out[t.name] = {"kind": "binary_mask", "names": names if len(names) == 2 else ["background", t.name]}
        elif t.kind in ("segmentation", "drivable", "lanes"):
            out[t.name] = {"kind": "segmentation", "names": names}
    return out


# -- the loop ------------------------------------------------------------------------------------
class _EvalCollate:
    """Batch of (model-size tensors, original samples); picklable for data-loader workers."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.resize = Resize(size)

    def __call__(self, samples: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return collate([self.resize(s) for s in samples]), samples


@dataclass
class EvalResult:
    """Flat metrics (``"<task>/<metric>"``), mean losses (``"<task>"`` and ``"loss"``), counts."""

    metrics: dict[str, float | int | None] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    seconds: float = 0.0
    unlabelled: list[str] = field(default_factory=list)  # evaluated tasks the data never labels


def evaluate(model: torch.nn.Module, dataset: Dataset, *, tasks: Sequence[str] | None = None,
             batch_size: int = 4, loss: MultiTaskLoss | None = None, num_workers: int = 0,
             bf16: bool = False, progress: bool = False, desc: str = "eval",
             engine: Any = None, intrinsics: bool = True, mounting: bool = True) -> EvalResult:
    """Evaluate ``model`` (a :class:`MultiTaskNet`) on raw samples of ``dataset``.

    Args:
        tasks: task names to evaluate (default: every task of the model).
        loss: also compute validation losses with this loss (its tasks).
        bf16: autocast the forward pass to bfloat16 (slower on CPUs without bf16 units).
        intrinsics: metric outputs follow each sample's camera (``meta["K"]``) when it has one,
            as the engine follows its camera (see :func:`score_outputs`).
        mounting: likewise with each sample's mounting height (``meta["mounting"]``), as the
            engine follows its mounting.

    The model's train/eval flags are restored afterwards, so the trainer can call this mid-run.
    With ``engine`` (a :class:`~perception.runtime.engine.PerceptionEngine` serving ``model``'s
    tasks), predictions come from the engine on the samples' original uint8 frames - the exact
    path bag replay takes, so replay and ``tadp eval --backend`` agree to the bit. Losses are not
    available on that path.

    Raises:
        ConfigError: unknown task names. DataError: an empty dataset.
    """
    names = list(model.tasks) if tasks is None else list(tasks)
    if unknown := [n for n in names if n not in model.tasks]:
        raise ConfigError(f"unknown tasks {unknown}; the model has {list(model.tasks)}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError("evaluate: the dataset is empty")
    cfgs = [model.tasks[n].cfg for n in names]
    metrics = MetricSet(metric_specs(cfgs))
    size = tuple(model.cfg.input_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_EvalCollate(size))  # type: ignore[arg-type]
    device = next(model.parameters()).device
    flags = {m: m.training for m in model.modules()}
    model.eval()
    loss_sums: dict[str, float] = {}
    loss_counts: dict[str, int] = {}
    count, start = 0, time.perf_counter()
    seen: set[str] = set()
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc=desc, unit="batch", leave=False)
    try:
        with torch.no_grad():  # not inference_mode: the encoder caches index tensors reused in training
            for batch, originals in batches:
                if engine is not None:
                    # One frame per call, as replay and the node run: compiled programs are
                    # batch-1, and batching would change float rounding.
                    per = [engine.logits([s["image"]], rgb=True) for s in originals]
                    raw = {k: torch.cat([p[k] for p in per]) for k in names}
                else:
                    images = normalize_images(batch["image"].to(device))
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        raw = model(images, names)
                    raw = {k: v.float() for k, v in raw.items()}
                if loss is not None and engine is None:
                    _, parts = loss({k: raw[k] for k in loss.tasks}, batch)
                    for k, v in parts.items():
                        loss_sums[k] = loss_sums.get(k, 0.0) + v * len(originals)
                        loss_counts[k] = loss_counts.get(k, 0) + len(originals)
                seen |= score_outputs(model, raw, originals, cfgs, metrics, intrinsics=intrinsics,
                                      mounting=mounting)
                count += len(originals)
    finally:
        for m, was_training in flags.items():
            m.training = was_training
    losses = {k: loss_sums[k] / loss_counts[k] for k in loss_sums}
    values = {k: v for k, v in metrics.compute().items() if k.split("/", 1)[0] in seen}
    unlabelled = [n for n in metrics.tasks if n not in seen]
    return EvalResult(values, losses, count, time.perf_counter() - start, unlabelled)


def score_outputs(model: torch.nn.Module, raw: Mapping[str, torch.Tensor],
                  originals: Sequence[Mapping[str, Any]], cfgs: Sequence[TaskConfig],
                  metrics: MetricSet, *, intrinsics: bool = True, mounting: bool = True
                  ) -> set[str]:
    """Score raw outputs against each sample's labels: resize them to the label's resolution,
    post-process them with the task's kind and feed ``metrics``, one ``update`` per sample.

    The one scoring path of :func:`evaluate` and bag replay, which is why their metrics agree.

    Args:
        model: The network whose task heads post-process (``model.tasks[name].kind``).
        raw: Task name -> raw outputs ``[B, C, h, w]`` (logits / log-depth), sample ``i`` at row ``i``.
        originals: The ``B`` samples at their own resolution, labels under ``target_key(cfg)``.
        cfgs: The tasks to score; tasks without a metric or without a label in a sample are skipped.
        metrics: Accumulates the scores.
        intrinsics: post-process with each sample's focal length (``meta["K"]``) when it has
            one, as the engine does with its camera; False scores the training cameras' scale.
        mounting: likewise with each sample's mounting height (``meta["mounting"]``), as the
            engine does with its mounting; False scores the training cameras' height.

    Returns:
        The names of the tasks that had a label in at least one sample.
    """
    seen: set[str] = set()
    height = next(iter(raw.values())).shape[-2] if raw else 0  # the network input's
    for i, sample in enumerate(originals):
        preds, targets = {}, {}
        focal = sample_focal_px(sample, height) if intrinsics and height else None
        z_m = sample_height_m(sample) if mounting else None
        for cfg in cfgs:
            key = target_key(cfg)
            if cfg.name not in metrics.tasks or key not in sample:
                continue
            label = sample[key]
            out = raw[cfg.name][i:i + 1]
            if tuple(out.shape[-2:]) != label.shape:
                out = F.interpolate(out, size=label.shape, mode="bilinear", align_corners=False)
            kind = model.tasks[cfg.name].kind
            pred = kind.postprocess(out, cfg, focal_px=focal, height_m=z_m)[0].cpu().numpy()
            if cfg.kind == "drivable" and sample.get("meta", {}).get("drivable_binary"):
                pred = np.where(pred == 2, 1, pred).astype(pred.dtype)  # label only knows "drivable"
            preds[cfg.name], targets[cfg.name] = pred, label
        metrics.update(preds, targets)
        seen |= set(preds)
    return seen


# -- reports -------------------------------------------------------------------------------------
def metrics_markdown(metrics: Mapping[str, Any], title: str = "Metrics") -> str:
    """A Markdown report: one table of headline metrics, one of per-class IoU."""
    lines = [f"# {title}", "", "| task | metric | value |", "|---|---|---|"]
    per_class = []
    for key, value in metrics.items():
        task, _, name = key.partition("/")
        row = f"| {task} | {name} | {_fmt(value)} |"
        (per_class if name.startswith("iou/") else lines).append(row)
    if per_class:
        lines += ["", "## Per-class IoU", "", "| task | class | IoU |", "|---|---|---|"]
        lines += [r.replace("| iou/", "| ") for r in per_class]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"
