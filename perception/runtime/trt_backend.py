"""TensorRT backend (the ``tensorrt`` extra): torch-tensorrt's dynamo frontend on an NVIDIA GPU.

Pipeline per program (the trunk once, one program per slot key):

1. **Precision policy** (:mod:`perception.runtime.trt_cache`): for ``fp16`` a copy of the program
   gets fp16 weights, LayerNorms that compute in fp32, and runs under CUDA autocast (softmax in
   fp32, matmuls/convs in fp16); tensors between engines are fp16, a slot's prediction is fp32.
   ``fp32`` is the plain program. The precision is thus *in the graph* as explicit casts, which
   TensorRT obeys under strong typing on every torch-tensorrt from 2.8 (Jetson) to 2.14
   (shared/research/tensorrt_notes.md §1.3, §5.2).
2. **Export**: ``torch.export.export(strict=False)`` on the GPU with static shapes, then
   ``run_decompositions({})`` (inlines autocast regions into explicit casts, keeps ops whole for
   torch-tensorrt's own lowering). :func:`export_program` is exactly what the CPU tests run.
3. **Build**: ``torch_tensorrt.dynamo.compile`` with version-branched, signature-checked settings.
4. **Cache**: ``torch_tensorrt.save`` (ExportedProgram with the serialized engines inside) written
   atomically to ``<cache>/tensorrt/<gpu+versions>/<key>.pt2`` plus a JSON manifest; the key covers
   trunk fingerprint, kind, shape, precision, GPU, TensorRT, torch-tensorrt, torch/CUDA, settings
   and the slot signature. A warm start only loads; a cache file that fails to load is rebuilt.

Task weights are graph **inputs** of the slot engines, so adding or replacing a task of an existing
slot key feeds other tensors to the same engine: no rebuild, no refit (DESIGN §4). TensorRT caveat:
input weights cannot be constant-folded or pre-transformed, so conv+BatchNorm folding, weight
layout transforms and bias fusion are lost inside the task branch and decoder (the frozen trunk
and the encoder weights a slot reuses stay build-time constants, fully optimised). Nothing was
measured here. The alternative is constant weights plus ``torch_tensorrt.dynamo.refit_module_weights``
per swap: full TensorRT optimisation, but seconds per switch, ``immutable_weights=False`` (the
TensorRT 11.3 refit-numerics issue) and no chained refits on TensorRT < 10.14 (notes §2).

Builds log to ``logging.getLogger("perception.runtime.trt_backend")``: one line before and after
each build with timings, and a "still building" line every 30 s while TensorRT works.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from perception._optional import require
from perception.errors import BackendError, InputError, MissingDependencyError
from perception.runtime.backend import Backend, SlotRunner
from perception.runtime.slots import PROGRAM_VERSION, SlotKey, SlotProgram, TrunkProgram
from perception.runtime.trt_cache import (
    UNAVAILABLE,
    PrecisionPolicy,
    TrtEnvironment,
    checked_settings,
    compile_settings,
    engine_cache_key,
    environment_dirname,
    precision_policy,
    probe_environment,
)

__all__ = ["TrtBackend", "TorchTensorRT", "Toolchain", "EngineRecord", "Fp32LayerNorm",
           "trunk_module", "slot_module", "export_program", "partition_counts"]

log = logging.getLogger(__name__)
CACHE_SCHEMA = 1  # bump when the file layout or the program wrappers change meaning
HEARTBEAT_S = 30.0


# -- precision: the modules that get exported --------------------------------------------------------
class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input dtype, output in the input dtype.

    Same parameter names as ``nn.LayerNorm``, so slot programs can still bind task weights to it.
    The explicit casts survive export and TensorRT keeps them under strong typing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


def _with_policy(module: nn.Module, policy: PrecisionPolicy) -> nn.Module:
    """A deep copy with the policy's weights dtype and fp32 LayerNorms (the original is untouched)."""
    module = copy.deepcopy(module).eval().requires_grad_(False)
    if policy.compute is None:
        return module
    if policy.fp32_layer_norm:
        for name, sub in list(module.named_modules()):
            if type(sub) is nn.LayerNorm:
                parent_name, _, attr = name.rpartition(".")
                new = Fp32LayerNorm(sub.normalized_shape, sub.eps, sub.elementwise_affine,
                                    bias=sub.bias is not None)
                new.weight, new.bias = sub.weight, sub.bias
                setattr(module.get_submodule(parent_name), attr, new)
    module.to(policy.compute)
    for sub in module.modules():
        if isinstance(sub, Fp32LayerNorm):
            sub.float()
    return module


class _TrunkModule(nn.Module):
    """The trunk under a precision policy: fp32 images in, boundary-dtype tensors out."""

    def __init__(self, program: TrunkProgram, policy: PrecisionPolicy) -> None:
        super().__init__()
        self.program = _with_policy(program, policy)
        self.compute, self.boundary = policy.compute, policy.boundary

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.compute is None:
            outs = self.program(images)
        else:
            with torch.autocast(images.device.type, dtype=self.compute):
                outs = self.program(images)
        return tuple(o.to(self.boundary) for o in outs)


class _SlotModule(nn.Module):
    """A slot under a precision policy: ``(*trunk, *sources, *weights) -> (out, f0, f1, f2, f3)``
    with ``out`` in the policy's output dtype and the stage features in the boundary dtype."""

    def __init__(self, program: SlotProgram, policy: PrecisionPolicy) -> None:
        super().__init__()
        self.program = _with_policy(program, policy)
        self.compute, self.boundary, self.output = policy.compute, policy.boundary, policy.output

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.compute is None:
            out, *feats = self.program.features_and_output(*args)
        else:
            with torch.autocast(args[0].device.type, dtype=self.compute):
                out, *feats = self.program.features_and_output(*args)
        return (out.to(self.output), *(f.to(self.boundary) for f in feats))


def trunk_module(program: TrunkProgram, policy: PrecisionPolicy) -> nn.Module:
    """The module the backend exports for the trunk (a policy-cast copy; ``program`` is untouched)."""
    return _TrunkModule(program, policy).eval()


def slot_module(program: SlotProgram, policy: PrecisionPolicy) -> nn.Module:
    """The module the backend exports for a slot (a policy-cast copy; ``program`` is untouched)."""
    return _SlotModule(program, policy).eval()


def export_program(module: nn.Module, args: Sequence[torch.Tensor]) -> torch.export.ExportedProgram:
    """What torch-tensorrt's dynamo frontend receives: non-strict ``torch.export`` with static
    shapes, lowered to ATen without decompositions (autocast regions become explicit casts)."""
    with torch.no_grad():
        module(*args)  # warms the geometry constants (masks, bias indices) so they export as constants
    ep = torch.export.export(module, tuple(args), strict=False)
    return ep.run_decompositions({})


def partition_counts(compiled: Any) -> tuple[int, int]:
    """(TensorRT segments, PyTorch fallback segments) of a torch-tensorrt compiled module."""
    names = [n for n, _ in compiled.named_children()] if isinstance(compiled, nn.Module) else []
    return (sum(n.startswith("_run_on_acc") for n in names),
            sum(n.startswith("_run_on_gpu") for n in names))


# -- toolchain: the only part that touches torch_tensorrt ------------------------------------------------
class Toolchain(Protocol):
    """Compiler seam: :class:`TorchTensorRT` on a GPU; tests pass a CPU stand-in."""

    device: torch.device

    def environment(self) -> TrtEnvironment: ...

    def settings(self, precision: str, timing_cache_path: Path) -> dict[str, Any]: ...

    def build(self, program: torch.export.ExportedProgram, args: Sequence[torch.Tensor],
              settings: dict[str, Any]) -> Any: ...

    def save(self, compiled: Any, path: Path, args: Sequence[torch.Tensor]) -> None: ...

    def load(self, path: Path) -> Callable[..., Any]: ...


def _no_cuda_message() -> str:
    build = ("a CPU-only torch build" if torch.version.cuda is None
             else f"torch built for CUDA {torch.version.cuda}, but no usable GPU or driver")
    missing = ("" if importlib.util.find_spec("torch_tensorrt") is not None
               else " torch_tensorrt is not installed either.")
    return (f"the tensorrt backend needs an NVIDIA GPU with CUDA, but torch.cuda.is_available() "
            f"is False here (torch {torch.__version__}: {build}).{missing} Use backend "
            f"'onnxruntime' or 'torch' on this machine; on a GPU machine install a CUDA torch and "
            f"pip install 'tad_perception[tensorrt]' (Jetson: the JetPack wheels, docs/tensorrt.md)")


class TorchTensorRT:
    """The real toolchain: torch-tensorrt's dynamo frontend on the current CUDA device."""

    def __init__(self, tt: Any) -> None:
        self.tt = tt
        self.device = torch.device("cuda", torch.cuda.current_device())
        env = probe_environment()  # after the import: reads tensorrt.__version__
        if env.torch_trt_version == UNAVAILABLE:  # e.g. a source build without package metadata
            env = dataclasses.replace(env, torch_trt_version=str(getattr(tt, "__version__",
                                                                         UNAVAILABLE)))
        self._env = env

    @classmethod
    def create(cls) -> TorchTensorRT:
        """Check CUDA, then import torch_tensorrt.

        Raises:
            BackendError: no CUDA device, or torch_tensorrt fails to import for another reason
                than being absent (it raises bare Exception/AssertionError/RuntimeError, notes §7).
            MissingDependencyError: torch_tensorrt is not installed.
        """
        if not torch.cuda.is_available():
            raise BackendError(_no_cuda_message())
        try:
            tt = require("torch_tensorrt", extra="tensorrt", purpose="the tensorrt backend")
        except MissingDependencyError:
            raise
        except Exception as err:  # noqa: BLE001 - torch_tensorrt's import errors are not ImportError
            raise BackendError(
                f"torch_tensorrt is installed but fails to import ({type(err).__name__}: {err}); "
                "its version must match torch's and TensorRT must be installed (docs/tensorrt.md)"
            ) from err
        return cls(tt)

    def environment(self) -> TrtEnvironment:
        return self._env

    def settings(self, precision: str, timing_cache_path: Path) -> dict[str, Any]:
        return compile_settings(self._env.torch_trt_version, precision,
                                timing_cache_path=str(timing_cache_path), tegra=self._env.tegra)

    def build(self, program, args, settings):
        checked = checked_settings(self.tt.dynamo.compile, settings,
                                   version=self._env.torch_trt_version)
        return self.tt.dynamo.compile(program, arg_inputs=list(args), **checked)

    def save(self, compiled, path, args):
        # Real CUDA tensors as inputs: accepted by every save() from 2.8 (Tensors only) to 2.14.
        self.tt.save(compiled, str(path), output_format="exported_program", arg_inputs=list(args))

    def load(self, path):
        loaded = self.tt.load(str(path))  # registers the TensorRT ops before torch.export.load
        return loaded.module() if isinstance(loaded, torch.export.ExportedProgram) else loaded


# -- the backend ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineRecord:
    """What happened to one program: ``built`` or ``loaded``, and whether the cache file exists."""

    kind: str
    action: str
    seconds: float
    path: Path
    cached: bool
    trt_segments: int = -1
    torch_segments: int = -1


class _Heartbeat:
    """Logs "still building ..." every ``interval_s`` while a build runs: torch-tensorrt exposes no
    TensorRT progress monitor, and a Jetson build takes minutes."""

    def __init__(self, what: str, interval_s: float = HEARTBEAT_S) -> None:
        self.what, self.interval_s = what, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trt-build-heartbeat", daemon=True)
        self._t0 = 0.0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            log.info("still building %s: %.0f s elapsed", self.what, time.perf_counter() - self._t0)

    def __enter__(self) -> _Heartbeat:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _TrtSlot(SlotRunner):
    """One compiled slot program: feeds (trunk outputs, source features, task weights), in the
    order the program was exported with, to the compiled module on the backend's device."""

    def __init__(self, key: SlotKey, compiled: Callable[..., Any], *, num_trunk: int,
                 num_sources: int, weight_names: Sequence[str],
                 weight_specs: Sequence[tuple[tuple[int, ...], torch.dtype]],
                 device: torch.device) -> None:
        self.key, self.compiled, self.device = key, compiled, torch.device(device)
        self.num_trunk, self.num_sources = num_trunk, num_sources
        self.weight_names, self.weight_specs = list(weight_names), list(weight_specs)

    def prepare(self, weights: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Device copies of a task's weights in slot order, checked against the built signature."""
        if len(weights) != len(self.weight_specs):
            raise BackendError(f"slot {self.key.tag()} takes {len(self.weight_specs)} weight "
                               f"tensors, got {len(weights)}")
        out = []
        for name, w, (shape, dtype) in zip(self.weight_names, weights, self.weight_specs,
                                           strict=True):
            if tuple(w.shape) != shape:
                raise BackendError(f"slot {self.key.tag()}: weight {name!r} has shape "
                                   f"{tuple(w.shape)}, the engine was built for {shape}")
            out.append(w.detach().to(self.device, dtype, copy=True).contiguous())
        return tuple(out)

    def run(self, trunk: Any, sources: Sequence[Any], weights: Any) -> tuple[Any, list[Any]]:
        if len(trunk) != self.num_trunk:
            raise BackendError(f"slot {self.key.tag()} takes {self.num_trunk} trunk outputs, "
                               f"got {len(trunk)}")
        if len(sources) != self.num_sources:
            raise BackendError(f"slot {self.key.tag()} fuses {self.num_sources} source tasks, "
                               f"got {len(sources)}")
        flat_src = [f for feats in sources for f in feats]
        with torch.no_grad():
            out = self.compiled(*trunk, *flat_src, *weights)
        return out[0], list(out[1:5])


class TrtBackend(Backend):
    """torch-tensorrt on CUDA with an on-disk engine cache (see the module docstring).

    Args:
        precision: ``fp16`` (default) or ``fp32``.
        cache_dir: cache root; engines go to ``<cache_dir>/tensorrt/<device+versions>/``.
        toolchain: the compiler; default :meth:`TorchTensorRT.create`. Tests pass a CPU stand-in.

    Raises:
        BackendError: unknown precision, no CUDA device, torch_tensorrt fails to import.
        MissingDependencyError: torch_tensorrt is not installed.
    """

    name = "tensorrt"
    max_batch = 1

    def __init__(self, *, threads: int = 2, cache_dir: Path | None = None,
                 precision: str = "fp16", toolchain: Toolchain | None = None) -> None:
        super().__init__(threads=threads, cache_dir=cache_dir, precision=precision)
        self.policy = precision_policy(precision)
        self.toolchain = toolchain if toolchain is not None else TorchTensorRT.create()
        self.device = self.toolchain.device
        self.env = self.toolchain.environment()
        self.engine_dir = self.cache_dir / "tensorrt" / environment_dirname(self.env)
        self.settings = self.toolchain.settings(precision, self.engine_dir / "timing_cache.bin")
        key_settings = {k: v for k, v in self.settings.items() if k != "timing_cache_path"}
        self._key_extra = {"schema": CACHE_SCHEMA, "programs": PROGRAM_VERSION,
                           "torch": self.env.torch_version,
                           "cuda": self.env.cuda_version, "sm": self.env.compute_capability,
                           "settings": key_settings, "policy": self.policy.describe()}
        self.records: list[EngineRecord] = []
        self._trunk: Callable[..., Any] | None = None
        self._trunk_shape: tuple[int, ...] = ()

    def describe(self) -> str:
        return (f"{self.name} ({self.precision}, {self.env.gpu_name}, TensorRT "
                f"{self.env.trt_version}, torch-tensorrt {self.env.torch_trt_version})")

    # -- cache ----------------------------------------------------------------------------------------------
    def engine_path(self, kind: str, fingerprint: str, shape: Sequence[int],
                    extra: dict[str, Any]) -> Path:
        key = engine_cache_key(fingerprint, kind, shape, self.precision, self.env.gpu_name,
                               self.env.trt_version, self.env.torch_trt_version,
                               {**self._key_extra, **extra})
        return self.engine_dir / f"{key}.pt2"

    def _write_engine(self, compiled: Any, path: Path, args: Sequence[torch.Tensor]) -> bool:
        """Save through a temporary sibling and one rename; False (and a warning) on failure."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.pt2", dir=path.parent)
        os.close(fd)
        try:
            self.toolchain.save(compiled, Path(tmp), args)
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the node may run as another user
            os.replace(tmp, path)
            return True
        except Exception as err:  # noqa: BLE001 - the engine still works, it just is not cached
            log.warning("could not write the TensorRT engine cache %s (%s: %s); this engine is "
                        "used now but will be rebuilt on the next start", path,
                        type(err).__name__, err)
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _engine(self, kind: str, fingerprint: str, shape: Sequence[int], extra: dict[str, Any],
                make: Callable[[], tuple[nn.Module, list[torch.Tensor]]]) -> Callable[..., Any]:
        """Load ``kind`` from the cache, or build it (``make`` gives the module and device args)."""
        path = self.engine_path(kind, fingerprint, shape, extra)
        what = f"{kind} {'x'.join(map(str, shape))} {self.precision}"
        if path.is_file():
            t0 = time.perf_counter()
            try:
                compiled = self.toolchain.load(path)
            except Exception as err:  # noqa: BLE001 - a damaged cache file is rebuilt
                log.warning("cached TensorRT engine %s cannot be loaded (%s: %s); rebuilding it",
                            path, type(err).__name__, err)
            else:
                dt = time.perf_counter() - t0
                log.info("loaded TensorRT engine %s from the cache in %.1f s (%s)", what, dt, path)
                self.records.append(EngineRecord(kind, "loaded", dt, path, True))
                return compiled
        log.info("building TensorRT engine %s on %s (TensorRT %s, torch-tensorrt %s); this takes "
                 "minutes on a Jetson", what, self.env.gpu_name, self.env.trt_version,
                 self.env.torch_trt_version)
        t0 = time.perf_counter()
        try:
            with _Heartbeat(what):
                module, args = make()
                program = export_program(module, args)
                del module  # the policy copy; the exported program holds what the build needs
                log.info("exported %s in %.1f s; TensorRT build starts", what,
                         time.perf_counter() - t0)
                compiled = self.toolchain.build(program, args, self.settings)
                del program
        except BackendError:
            raise
        except Exception as err:  # noqa: BLE001 - export/conversion/builder errors vary
            raise BackendError(f"building the TensorRT engine {what} failed after "
                               f"{time.perf_counter() - t0:.0f} s: {type(err).__name__}: {err}"
                               ) from err
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # return the copies' memory (unified memory on Jetson)
        n_trt, n_torch = partition_counts(compiled)
        if n_torch:
            log.warning("%s: %d segment(s) fall back to PyTorch beside %d TensorRT engine(s)",
                        what, n_torch, n_trt)
        cached = self._write_engine(compiled, path, args)
        dt = time.perf_counter() - t0
        if cached:
            self._write_manifest(path, kind, fingerprint, shape, extra, dt, n_trt, n_torch)
        log.info("built TensorRT engine %s in %.1f s -> %s", what, dt, path)
        self.records.append(EngineRecord(kind, "built", dt, path, cached, n_trt, n_torch))
        return compiled

    def _write_manifest(self, path: Path, kind: str, fingerprint: str, shape: Sequence[int],
                        extra: dict[str, Any], seconds: float, n_trt: int, n_torch: int) -> None:
        from perception.training.fingerprint import write_atomic

        manifest = {"schema": CACHE_SCHEMA, "kind": kind, "trunk_fingerprint": fingerprint,
                    "shape": list(shape), "precision": self.precision,
                    "environment": self.env.as_dict(), "key_extra": {**self._key_extra, **extra},
                    "build_seconds": round(seconds, 1), "trt_segments": n_trt,
                    "torch_segments": n_torch, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_atomic(path.with_suffix(".json"),
                     json.dumps(manifest, indent=2, default=str).encode())

    # -- the Backend contract -------------------------------------------------------------------------------
    def compile_trunk(self, program: TrunkProgram, example: torch.Tensor, fingerprint: str) -> None:
        shape = tuple(example.shape)

        def make() -> tuple[nn.Module, list[torch.Tensor]]:
            module = trunk_module(program, self.policy).to(self.device)
            return module, [example.to(self.device, torch.float32)]

        self._trunk = self._engine("trunk", fingerprint, shape, {}, make)
        self._trunk_shape = shape

    def compile_slot(self, program: SlotProgram, example_args: Sequence[torch.Tensor],
                     fingerprint: str) -> SlotRunner:
        n_in = program.num_trunk + 4 * program.key.num_sources
        if len(example_args) != n_in + len(program.weight_names):
            raise BackendError(f"slot {program.key.tag()} expects {n_in} trunk/source tensors and "
                               f"{len(program.weight_names)} weights, got {len(example_args)}")
        weights = list(example_args[n_in:])
        specs = [(tuple(w.shape), w.dtype) for w in weights]
        signature = {
            "key": program.key.tag(), "structure": program.structure, "variant": program.variant,
            "hrnet": program.hrnet,
            "decoder": type(program.task.head.decoder).__name__,
            "inputs": [list(a.shape) for a in example_args[:n_in]],
            "weights": [[n, list(s), str(d)] for n, (s, d) in zip(program.weight_names, specs,
                                                                  strict=True)]}
        shape = (int(example_args[0].shape[0]), 3, *program.size)

        def make() -> tuple[nn.Module, list[torch.Tensor]]:
            module = slot_module(program, self.policy).to(self.device)
            args = [a.to(self.device, self.policy.boundary) for a in example_args[:n_in]]
            return module, args + [w.to(self.device) for w in weights]

        compiled = self._engine(f"slot-{program.key.tag()}", fingerprint, shape,
                                {"slot": signature}, make)
        return _TrtSlot(program.key, compiled, num_trunk=program.num_trunk,
                        num_sources=program.key.num_sources, weight_names=program.weight_names,
                        weight_specs=specs, device=self.device)

    def run_trunk(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self._trunk is None:
            raise BackendError("run_trunk before compile_trunk")
        if tuple(images.shape) != self._trunk_shape:
            raise InputError(f"the TensorRT trunk was built for input {self._trunk_shape}, got "
                             f"{tuple(images.shape)}; engines have static shapes (build one per "
                             "input size and batch: tadp build-engine --input-size HxW)")
        with torch.no_grad():
            return tuple(self._trunk(images.to(self.device, torch.float32)))
