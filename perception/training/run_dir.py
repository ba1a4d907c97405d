"""A training run's directory: what was trained (config), how it went (history JSON, curves) and
the resulting weights, laid out so a person and ``tadp eval`` can both read it.

Layout::

    RUN/config.yaml            model config (the trainable layout; ``load_config`` reads it)
    RUN/train.json             training settings, datasets, command line
    RUN/history.json           {"steps": [...], "epochs": [...]}: losses, lr, validation metrics
                               (written with every checkpoint and every epoch)
    RUN/loss_curves.png        train (per step) and validation (per epoch) losses, per task
    RUN/metric_curves.png      validation metrics per epoch, one panel per task
    RUN/checkpoints/last/      resume point (model + optimizer + trainer state)
    RUN/checkpoints/best/      lowest validation loss
    RUN/model.safetensors      final weights, with RUN/model.yaml (``model_file.save_model``)
    RUN/metrics.json           final validation metrics
    RUN/<task>.tadtask/        ``tadp train-task`` only: the task bundle (``bundle.save_bundle``;
                               ``--adapter full`` writes RUN/model.safetensors instead)
    RUN/freeze.json            ``tadp train-task`` only: the freeze proof

Writes are atomic (temporary file + rename) so a killed run never leaves a half-written JSON.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from perception.config import ModelConfig, load_config
from perception.errors import ConfigError

__all__ = ["RunDir", "write_json", "read_json", "load_model_from", "plot_history", "PRIMARY_METRICS"]

# Metrics drawn in the curves, per task kind (the rest stay in history.json).
PRIMARY_METRICS: dict[str, tuple[str, ...]] = {
    "segmentation": ("miou", "pixel_acc"),
    "drivable": ("miou", "miou_binary"),
    "lanes": ("iou", "acc"),
    "depth": ("abs_rel", "delta1"),
    "mask": ("miou",),
    "saliency": ("miou",),
}


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (NaN is written as null, never as an invalid token)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read {str(path)!r}: {err}") from err


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_model_from(path: str | Path) -> Any:
    """A :class:`MultiTaskNet` (eval mode) from any model a user points at.

    Accepted: a ``save_model`` file (``X.safetensors`` / ``X.yaml``, see
    :mod:`perception.training.model_file`); a run directory (its ``model.safetensors``, else its best or
    last checkpoint); a checkpoint directory (``config.yaml`` + ``model.safetensors``).

    Raises:
        ConfigError: nothing loadable at ``path``. CheckpointError: weights do not fit.
    """
    from perception.training.model_file import load_model

    path = Path(path)
    if path.is_file():
        return load_model(path)
    if (path / "model.safetensors").is_file() and (path / "model.yaml").is_file():
        return load_model(path / "model.safetensors")
    for cand in (path, path / "checkpoints" / "best", path / "checkpoints" / "last"):
        if (cand / "config.yaml").is_file() and (cand / "model.safetensors").is_file():
            return _load_checkpoint_model(cand)
    raise ConfigError(f"no model at {str(path)!r}: expected a save_model file (X.safetensors + X.yaml), a "
                      "`tadp train` run directory, or a checkpoint directory (config.yaml + model.safetensors)")


def _load_checkpoint_model(path: Path) -> Any:
    """A base-mode checkpoint: the model config beside a full state dict."""
    from safetensors.torch import load_file

    from perception.errors import CheckpointError
    from perception.models.network import MultiTaskNet

    model = MultiTaskNet(load_config(path / "config.yaml"))
    state = load_file(str(path / "model.safetensors"))
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(f"{str(path)!r}: weights do not fit its config.yaml (missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}, shape mismatch {shapes[:5]})")
    model.load_state_dict(state)
    return model.eval()


class RunDir:
    """The run directory of one training (see the module docstring for the layout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.history: dict[str, list[dict[str, Any]]] = {"steps": [], "epochs": []}

    @classmethod
    def create(cls, path: str | Path, *, resume: bool = False, overwrite: bool = False) -> RunDir:
        """Make (or, with ``resume``, reopen) a run directory.

        Raises:
            ConfigError: it exists and holds a run, and neither ``resume`` nor ``overwrite`` is set.
        """
        run = cls(path)
        if run.path.exists() and any(run.path.iterdir()) and not (resume or overwrite):
            raise ConfigError(f"run directory {str(run.path)!r} already holds a run; pass --resume to continue it, "
                              "--overwrite to start again, or choose another --out")
        run.path.mkdir(parents=True, exist_ok=True)
        if overwrite and not resume:
            run._clear()
        if resume and (run.path / "history.json").is_file():
            run.history = read_json(run.path / "history.json")
        return run

    def _clear(self) -> None:
        """Remove what a previous run wrote (only our own files: the folder may hold others)."""
        for pattern in ("checkpoints", "history.json", "train.json", "config.yaml", "*.png", "model.safetensors",
                        "model.yaml", "metrics.json", "freeze.json", "*.tadtask"):
            for path in self.path.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def write_config(self, cfg: ModelConfig, settings: Mapping[str, Any]) -> None:
        (self.path / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
        write_json(self.path / "train.json", settings)

    def log_step(self, record: Mapping[str, Any]) -> None:
        self.history["steps"].append(dict(record))

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        self.history["epochs"].append(dict(record))
        self.save()

    def truncate(self, step: int) -> None:
        """Drop records after ``step`` (a resumed run repeats them)."""
        self.history["steps"] = [r for r in self.history["steps"] if r["step"] <= step]
        self.history["epochs"] = [r for r in self.history["epochs"] if r["step"] <= step]

    def save(self) -> None:
        write_json(self.path / "history.json", self.history)

    def plot(self, task_kinds: Mapping[str, str]) -> list[Path]:
        """Write the loss and metric curves; returns the files written."""
        return plot_history(self.history, self.path, task_kinds)


def plot_history(history: Mapping[str, Sequence[Mapping[str, Any]]], out: Path,
                 task_kinds: Mapping[str, str]) -> list[Path]:
    """``loss_curves.png`` and (when validation ran) ``metric_curves.png`` under ``out``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines, robots and training servers
    import matplotlib.pyplot as plt

    steps, epochs = history.get("steps", []), history.get("epochs", [])
    written = []
    names = ["loss", *task_kinds]
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        xs = [r["step"] for r in steps if r.get("train", {}).get(name) is not None]
        ys = [r["train"][name] for r in steps if r.get("train", {}).get(name) is not None]
        if xs:
            ax.plot(xs, ys, lw=0.8, alpha=0.5, label="train")
            ax.plot(xs, _smooth(ys), lw=1.5, label="train (smoothed)")
        vx = [r["step"] for r in epochs if r.get("val", {}).get(name) is not None]
        vy = [r["val"][name] for r in epochs if r.get("val", {}).get(name) is not None]
        if vx:
            ax.plot(vx, vy, "o-", lw=1.5, label="val")
        ax.set_title("total (weighted)" if name == "loss" else name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "loss_curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)

    panels = [(t, [m for m in PRIMARY_METRICS.get(k, ()) if any(
        r.get("metrics", {}).get(f"{t}/{m}") is not None for r in epochs)]) for t, k in task_kinds.items()]
    panels = [(t, ms) for t, ms in panels if ms]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.0), squeeze=False)
        for ax, (task, metrics) in zip(axes[0], panels, strict=True):
            for m in metrics:
                pts = [(r["step"], r["metrics"][f"{task}/{m}"]) for r in epochs
                       if r.get("metrics", {}).get(f"{task}/{m}") is not None]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=m)
            ax.set_title(task)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "metric_curves.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def _smooth(ys: Sequence[float], alpha: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, y in enumerate(ys, 1):
        avg = alpha * avg + (1 - alpha) * y
        out.append(avg / (1 - alpha**i))
    return out
