"""The backend contract: compile the trunk once, compile one program per slot key, run them.

Backends register an import path, so registering never imports TensorRT or onnxruntime
(Polygraphy's pattern); ``auto`` picks the fastest one that is importable and usable here.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from perception.errors import BackendError, RegistryError
from perception.runtime.slots import SlotKey, SlotProgram, TrunkProgram

__all__ = ["Backend", "SlotRunner", "BACKEND_PATHS", "make_backend", "available_backends",
           "default_cache_dir"]

BACKEND_PATHS: dict[str, str] = {
    "torch": "perception.runtime.torch_backend:TorchBackend",
    "onnxruntime": "perception.runtime.ort_backend:OrtBackend",
    "tensorrt": "perception.runtime.trt_backend:TrtBackend",
}


def default_cache_dir() -> Path:
    """Exported/compiled programs live here: ``$TADP_CACHE_DIR`` or ``~/.cache/tad_perception``."""
    return Path(os.environ.get("TADP_CACHE_DIR", Path.home() / ".cache" / "tad_perception"))


class SlotRunner(ABC):
    """One compiled slot program; runs any task of its key given that task's prepared weights."""

    key: SlotKey

    @abstractmethod
    def prepare(self, weights: Sequence[torch.Tensor]) -> Any:
        """Convert a task's weights (slot order) to what ``run`` consumes; done off the frame loop."""

    @abstractmethod
    def run(self, trunk: Any, sources: Sequence[Any], weights: Any) -> tuple[Any, list[Any]]:
        """(raw output [B, K, H, W], 4 stage features) for one task."""


class Backend(ABC):
    """Owns the compiled trunk and slot programs of one model at one input size."""

    name: str = ""
    # How many slot programs the engine may run at once, each on its own thread. 1 = one after the
    # other, each using every thread (torch: one global intra-op pool; TensorRT: one stream).
    slot_workers: int = 1
    # Frames per compiled program run: ONNX Runtime and TensorRT programs have static shapes (one
    # frame, what the cache key names); the engine runs a larger batch through them frame by frame.
    # None = any batch (torch eager).
    max_batch: int | None = None

    def __init__(self, *, threads: int = 2, cache_dir: Path | None = None,
                 precision: str = "fp32") -> None:
        self.threads = threads
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.precision = precision

    @abstractmethod
    def compile_trunk(self, program: TrunkProgram, example: torch.Tensor, fingerprint: str) -> None:
        """Build (or load from cache) the trunk for ``example``'s shape."""

    @abstractmethod
    def compile_slot(self, program: SlotProgram, example_args: Sequence[torch.Tensor],
                     fingerprint: str) -> SlotRunner:
        """Build (or load from cache) one slot program."""

    @abstractmethod
    def run_trunk(self, images: torch.Tensor) -> Any:
        """Trunk outputs for a normalised [B, 3, H, W] float32 batch."""

    @staticmethod
    def to_numpy(x: Any):
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x

    @staticmethod
    def to_torch(x: Any) -> torch.Tensor:
        return x if isinstance(x, torch.Tensor) else torch.from_numpy(x)

    def describe(self) -> str:
        return f"{self.name} ({self.precision}, {self.threads} threads)"


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def available_backends() -> list[str]:
    """Backends usable on this machine, fastest first."""
    out = []
    if _importable("torch_tensorrt") and torch.cuda.is_available():
        out.append("tensorrt")
    if _importable("onnxruntime"):
        out.append("onnxruntime")
    out.append("torch")
    return out


def make_backend(name: str = "auto", **kwargs: Any) -> Backend:
    if name == "auto":
        name = available_backends()[0]
    if name not in BACKEND_PATHS:
        raise RegistryError(f"unknown backend {name!r}; known: auto, {', '.join(BACKEND_PATHS)}")
    module, _, cls = BACKEND_PATHS[name].partition(":")
    try:
        backend_cls = getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise BackendError(f"backend {name!r} cannot be imported: {err}") from err
    return backend_cls(**kwargs)
