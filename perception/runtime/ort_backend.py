"""ONNX Runtime backend (the CPU default).

The trunk and each slot program are exported once to ONNX (opset 17, TorchScript exporter: ~5x
faster to export these graphs than the dynamo exporter, same speed in ORT) and cached on disk under
a name made of the trunk fingerprint, input shape, slot key, program version and opset, so a
warm start exports nothing. Task weights are graph inputs: switching tasks feeds other arrays to the
same session.

The trunk runs on every thread; slot sessions run on one thread each, ``threads`` of them at once
(the engine's slot pool). A slot is ~600 small nodes that two intra-op threads share badly (~1.5x
for 2x the cores), while two slots side by side use both cores fully. A slot session's thread count
is fixed, whatever the number of active tasks: ORT's results differ in the last bits between 1 and
2 threads, and a task's output must not change when another task is added (isolation).
Optional ``precision="int8"``: dynamic per-channel int8 quantisation of the weight MatMuls.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception._optional import require
from perception.errors import BackendError
from perception.runtime.backend import Backend, SlotRunner
from perception.runtime.slots import PROGRAM_VERSION, SlotProgram, TrunkProgram

__all__ = ["OrtBackend", "export_onnx"]

OPSET = 17
# ORT's CPU SkipLayerNormalization is ~3x slower than the Add + LayerNormalization it fuses on our
# narrow rows (C = 32..256; 1.6 ms vs 0.5 ms for the stage-0 prompt norm of a slot, ORT 1.32).
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def export_onnx(module: torch.nn.Module, args: Sequence[torch.Tensor], path: Path,
                input_names: list[str], output_names: list[str]) -> None:
    """Export to ``path`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation/tracer notes
            torch.onnx.export(module, tuple(args), tmp, input_names=input_names,
                              output_names=output_names, opset_version=OPSET, dynamo=False)
        os.replace(tmp, path)
    except Exception as err:
        Path(tmp).unlink(missing_ok=True)
        raise BackendError(f"ONNX export of {path.name} failed: {err}") from err


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 of the weight MatMuls, per channel (per-tensor loses too much accuracy on
    Swin's stage-4 features, shared/research/cpu_perf.md)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(prefix=dst.name, suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        quantize_dynamic(str(src), tmp, op_types_to_quantize=["MatMul"], per_channel=True,
                         weight_type=QuantType.QInt8)
        os.replace(tmp, dst)
    except Exception as err:
        Path(tmp).unlink(missing_ok=True)
        raise BackendError(f"int8 quantisation of {src.name} failed: {err}") from err


class _OrtSlot(SlotRunner):
    def __init__(self, backend: OrtBackend, program: SlotProgram, path: Path) -> None:
        self.key = program.key
        self.session = backend.session(path, threads=1)  # slot_workers of these run at once
        names = {i.name for i in self.session.get_inputs()}
        self.num_trunk = program.num_trunk
        self.num_sources = program.key.num_sources
        # The exporter drops inputs the graph does not use: feed only the ones it kept.
        self.trunk_inputs = [(i, f"t{i}") for i in range(self.num_trunk) if f"t{i}" in names]
        self.source_inputs = [(i, f"s{i}") for i in range(4 * self.num_sources) if f"s{i}" in names]
        self.weight_inputs = [(i, f"w{i}") for i in range(len(program.weight_names))
                              if f"w{i}" in names]

    def prepare(self, weights: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(weights[i].detach().cpu().numpy())
                for i, name in self.weight_inputs}

    def run(self, trunk: Any, sources: Sequence[Any], weights: Any) -> tuple[Any, list[Any]]:
        feed = dict(weights)
        for i, name in self.trunk_inputs:
            feed[name] = trunk[i]
        flat_src = [f for feats in sources for f in feats]
        for i, name in self.source_inputs:
            feed[name] = flat_src[i]
        out = self.session.run(None, feed)
        return out[0], out[1:]


class OrtBackend(Backend):
    name = "onnxruntime"
    max_batch = 1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.precision not in ("fp32", "int8"):
            raise BackendError(f"onnxruntime precision must be fp32 or int8, got {self.precision!r}")
        self.ort = require("onnxruntime", extra="dev", purpose="the onnxruntime backend")
        self.slot_workers = max(1, self.threads)
        # torch only pre- and post-processes here, inside each slot worker: one intra-op thread per
        # worker, not a pool per worker fighting over the same cores (4 tasks: 66.7 -> 63.9 ms).
        torch.set_num_threads(1)
        self._trunk = None
        self._trunk_outputs: list[str] = []

    def session(self, path: Path, threads: int | None = None):
        opts = self.ort.SessionOptions()
        opts.intra_op_num_threads = threads or self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The trunk and one session per slot key run back to back on the same cores, each with its
        # own intra-op pool: a worker left spinning after its session's run steals the core that
        # the next session (or the torch post-processing) needs.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return self.ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"],
                                             disabled_optimizers=DISABLED_OPTIMIZERS)
        except Exception as err:  # noqa: BLE001 - corrupt cache file or ORT failure
            raise BackendError(f"onnxruntime cannot load {path}: {err}") from err

    def _cached(self, stem: str, module: torch.nn.Module, args: Sequence[torch.Tensor],
                inputs: list[str], outputs: list[str]) -> Path:
        path = self.cache_dir / "onnx" / f"{stem}-p{PROGRAM_VERSION}-opset{OPSET}.onnx"
        if not path.is_file():
            export_onnx(module, args, path, inputs, outputs)
        if self.precision == "int8":
            q = path.with_name(path.stem + "-int8.onnx")
            if not q.is_file():
                quantize_int8(path, q)
            path = q
        return path

    def compile_trunk(self, program: TrunkProgram, example: torch.Tensor, fingerprint: str) -> None:
        with torch.no_grad():
            n = len(program(example))
        shape = "x".join(str(s) for s in example.shape)
        path = self._cached(f"{fingerprint[:16]}-trunk-{shape}", program, (example,), ["image"],
                            [f"t{i}" for i in range(n)])
        self._trunk = self.session(path)

    def compile_slot(self, program: SlotProgram, example_args: Sequence[torch.Tensor],
                     fingerprint: str) -> SlotRunner:
        n_src = 4 * program.key.num_sources
        names = ([f"t{i}" for i in range(program.num_trunk)] + [f"s{i}" for i in range(n_src)]
                 + [f"w{i}" for i in range(len(program.weight_names))])
        shape = "x".join(str(s) for s in example_args[0].shape)
        path = self._cached(f"{fingerprint[:16]}-slot-{program.key.tag()}-{program.structure}-{shape}",
                            _FeaturesAndOutput(program), example_args, names,
                            ["out", "f0", "f1", "f2", "f3"])
        return _OrtSlot(self, program, path)

    def run_trunk(self, images: torch.Tensor) -> list[np.ndarray]:
        return self._trunk.run(None, {"image": np.ascontiguousarray(images.numpy())})


class _FeaturesAndOutput(torch.nn.Module):
    def __init__(self, program: SlotProgram) -> None:
        super().__init__()
        self.program = program

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.program.features_and_output(*args)
