"""The TensorRT backend on a machine without a GPU (issue 6 item 4).

TensorRT cannot run here, so these tests check everything the backend relies on: the exact programs
it hands to torch-tensorrt's dynamo frontend (torch.export + lowering of the trunk and of a
TADFormer and a fusion slot under the fp16 policy; outputs equal to eager), the import/CUDA errors,
the cache logic (atomic writes, warm start without rebuild, damaged files) and the slot plumbing.
Cache keys and the version-branched compile settings are in ``test_trt_cache.py``.

The compiler is replaced by :class:`CpuToolchain`, a stand-in for the GPU CI cannot have: it
"builds" by returning the exported program's module and caches with torch.export.save/load (what
torch_tensorrt.save/load do around the serialized engines). Tests that need CUDA and torch-tensorrt
are at the bottom, marked ``trt`` and skipped here with the reason.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from perception.config import TaskConfig
from perception.errors import BackendError, InputError, MissingDependencyError
from perception.runtime import trt_backend
from perception.runtime.backend import make_backend
from perception.runtime.engine import PerceptionEngine
from perception.runtime.slots import SlotKey, SlotProgram, TrunkProgram, task_weights
from perception.runtime.trt_backend import (
    Fp32LayerNorm,
    TorchTensorRT,
    TrtBackend,
    _Heartbeat,
    _TrtSlot,
    slot_module,
    trunk_module,
)
from perception.runtime.trt_cache import (
    TrtEnvironment,
    checked_settings,
    compile_settings,
    precision_policy,
)
from perception.training.fingerprint import trunk_fingerprint

from .conftest import HAS_CUDA, HAS_TORCH_TRT, INPUT, make_model

needs_trt = pytest.mark.skipif(
    not (HAS_CUDA and HAS_TORCH_TRT),
    reason=f"needs an NVIDIA GPU with TensorRT: CUDA available={HAS_CUDA}, torch_tensorrt "
           f"installed={HAS_TORCH_TRT} (pip install 'tad_perception[tensorrt]', docs/tensorrt.md)")
FP16 = precision_policy("fp16")
FP32 = precision_policy("fp32")


# -- the CPU stand-in for torch-tensorrt -----------------------------------------------------------------
class _Compiled:
    def __init__(self, program: torch.export.ExportedProgram) -> None:
        self.program, self.module = program, program.module()

    def __call__(self, *args):
        return self.module(*args)


class CpuToolchain:
    """Stand-in for :class:`TorchTensorRT` (no GPU in CI): build = the exported program's module,
    save/load = torch.export.save/load. Records what it was asked to build."""

    device = torch.device("cpu")

    def __init__(self, torch_trt_version: str = "2.8.0") -> None:
        self.version = torch_trt_version
        self.builds: list[tuple[torch.export.ExportedProgram, list[torch.Tensor]]] = []
        self.loads = 0

    def environment(self) -> TrtEnvironment:
        return TrtEnvironment("CPU stand-in", "0.0", "none", "0.0", self.version,
                              torch.__version__, False)

    def settings(self, precision, timing_cache_path):
        return compile_settings(self.version, precision, timing_cache_path=str(timing_cache_path))

    def build(self, program, args, settings):
        self.builds.append((program, list(args)))
        return _Compiled(program)

    def save(self, compiled, path, args):
        torch.export.save(compiled.program, path)

    def load(self, path):
        self.loads += 1
        return torch.export.load(path).module()


class _MemoToolchain(CpuToolchain):
    """:class:`CpuToolchain` that loads each cache file from disk once per test session (the
    disk round trip is covered by the warm-start test; this keeps the engine test short)."""

    _loaded: dict[Path, object] = {}

    def load(self, path):
        if path not in self._loaded:
            self._loaded[path] = super().load(path)
        else:
            self.loads += 1
        return self._loaded[path]


def _slot_args(model, program: SlotProgram, name: str, image: torch.Tensor) -> list[torch.Tensor]:
    """(trunk outputs, source features, task weights) as PerceptionEngine._slot_args builds them."""
    with torch.no_grad():
        trunk = TrunkProgram(model)(image)
        sources = []
        for src in model.tasks[name].sources:
            sp = SlotProgram(model, src, INPUT)
            w = task_weights(model, src)
            sources += list(sp.features_and_output(*trunk, *[w[k] for k in sp.weight_names])[1:])
    w = task_weights(model, name)
    return [*trunk, *sources, *[w[k] for k in program.weight_names]]


def _fused_model():
    model = make_model()
    head = model.add_task(TaskConfig(name="fused", kind="mask"), sources=("segmentation", "drivable"))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in head.parameters():  # away from the initialisation, so fusion is non-trivial
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """Trunk + a TADFormer slot (lanes) + a fusion slot built cold with the stand-in, fp16."""
    model = _fused_model()
    cache = tmp_path_factory.mktemp("trt-cache")
    tool = CpuToolchain()
    backend = TrtBackend(cache_dir=cache, precision="fp16", toolchain=tool)
    fp = trunk_fingerprint(model)
    example = torch.zeros(1, 3, *INPUT)
    trunk = TrunkProgram(model)
    backend.compile_trunk(trunk, example, fp)
    slots = {}
    for name in ("lanes", "fused"):
        program = SlotProgram(model, name, INPUT)
        args = _slot_args(model, program, name, example)
        slots[name] = SimpleNamespace(program=program, args=args,
                                      runner=backend.compile_slot(program, args, fp))
    return SimpleNamespace(model=model, cache=cache, tool=tool, backend=backend, fp=fp,
                           trunk=trunk, slots=slots, example=example)


# -- (1) the exact programs torch-tensorrt receives ----------------------------------------------------------
_DATA_DEPENDENT = {"nonzero", "_local_scalar_dense", "masked_select", "unique", "cond",
                   "while_loop"}


def _op(node) -> str:
    """``aten.conv2d.default`` -> ``conv2d``."""
    parts = str(node.target).split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _groups(node) -> object:
    index = {"conv2d": 6, "convolution": 8}[_op(node)]
    return node.args[index] if len(node.args) > index else 1


@pytest.mark.slow
def test_exported_programs_are_what_torch_tensorrt_can_take(cold) -> None:
    assert len(cold.tool.builds) == 3  # trunk, lanes slot, fusion slot
    for i, (ep, args) in enumerate(cold.tool.builds):
        nodes = [n for n in ep.graph.nodes if n.op == "call_function"]
        # autocast regions were inlined into explicit casts: no higher-order ops left
        assert not [n for n in nodes if isinstance(n.target, torch._ops.HigherOrderOperator)]
        assert not [n for n in nodes if _op(n) in _DATA_DEPENDENT]
        # static shapes only, and conv groups are plain ints (TensorRT needs both)
        for ph in (n for n in ep.graph.nodes if n.op == "placeholder"):
            val = ph.meta.get("val")
            if isinstance(val, torch.Tensor):
                assert all(isinstance(d, int) for d in val.shape)
        convs = [n for n in nodes if _op(n) in ("conv2d", "convolution")]
        assert all(isinstance(_groups(n), int) for n in convs)
        # every forward argument is a user input (task weights are inputs, not constants)
        assert len(ep.graph_signature.user_inputs) == len(args)
        # precision policy: every LayerNorm computes in fp32, the matmuls/convs in fp16
        ln = [n for n in nodes if "layer_norm" in _op(n)]
        assert all(n.args[0].meta["val"].dtype == torch.float32 for n in ln)
        assert ln or i == 2  # trunk and TADFormer slot have LayerNorms, the fusion slot none
        heavy = [n for n in nodes if _op(n) in ("linear", "matmul", "conv2d")]
        assert heavy and any(n.meta["val"].dtype == torch.float16 for n in heavy)


@pytest.mark.slow
def test_slot_weights_are_inputs_not_constants(cold) -> None:
    for i, s in enumerate(cold.slots.values(), start=1):  # builds: trunk, lanes, fused
        ep = cold.tool.builds[i][0]
        used = {n.name for n in ep.graph.nodes if n.op == "placeholder" and n.users}
        template = [ph for ph, target in ep.graph_signature.inputs_to_parameters.items()
                    if target.startswith("program.task.")]
        assert template and not set(template) & used  # the template task's own tensors are unused
        n_in = s.program.num_trunk + 4 * s.program.key.num_sources
        weight_phs = ep.graph_signature.user_inputs[n_in:]
        assert sum(ph in used for ph in weight_phs) >= 0.9 * len(weight_phs)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> float:
    err = (a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-6)
    assert err <= tol, float(err)
    return float(err)


@pytest.mark.slow
def test_exported_outputs_equal_eager_and_stay_near_fp32(cold) -> None:
    image = torch.randn(1, 3, *INPUT, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref_trunk = cold.trunk(image)
        eager = trunk_module(cold.trunk, FP16)(image)
        exported = cold.tool.builds[0][0].module()(image)
    assert len(exported) == len(ref_trunk)
    for e, x, r in zip(eager, exported, ref_trunk, strict=True):
        assert x.dtype == torch.float16 and x.shape == r.shape
        _close(x, e, 2e-3)  # the exported graph computes what the eager policy module computes
    _close(exported[3], ref_trunk[3], 3e-2)  # and fp16 stays near fp32 (stage-4 features)
    for name, s in cold.slots.items():
        n_in = s.program.num_trunk + 4 * s.program.key.num_sources
        weights = s.args[n_in:]
        sources = []
        for src in cold.model.tasks[name].sources:
            sp = SlotProgram(cold.model, src, INPUT)
            w = task_weights(cold.model, src)
            with torch.no_grad():
                sources.append(list(sp.features_and_output(
                    *ref_trunk, *[w[k] for k in sp.weight_names])[1:]))
        half_sources = [[f.half() for f in feats] for feats in sources]  # as source slots give them
        with torch.no_grad():
            ref = s.program.features_and_output(*ref_trunk, *sum(sources, []), *weights)
            eager = slot_module(s.program, FP16)(*exported, *sum(half_sources, []), *weights)
        # the fp16 chain: exported trunk -> _TrtSlot -> exported slot
        out, feats = s.runner.run(exported, half_sources, s.runner.prepare(weights))
        assert out.dtype == torch.float32 and out.shape == ref[0].shape
        assert len(feats) == 4 and all(f.dtype == torch.float16 for f in feats)
        _close(out, eager[0], 2e-3)
        _close(out, ref[0], 5e-2)


@pytest.mark.slow
def test_warm_start_loads_without_rebuilding(cold) -> None:
    tool = _MemoToolchain()
    backend = TrtBackend(cache_dir=cold.cache, precision="fp16", toolchain=tool)
    backend.compile_trunk(TrunkProgram(cold.model), cold.example, cold.fp)
    for s in cold.slots.values():
        backend.compile_slot(s.program, s.args, cold.fp)
    assert tool.builds == [] and tool.loads == 3
    assert [r.action for r in backend.records] == ["loaded"] * 3
    image = torch.randn(1, 3, *INPUT)
    assert all(torch.equal(a, b) for a, b in zip(backend.run_trunk(image),
                                                 cold.backend.run_trunk(image), strict=True))
    assert [r.action for r in cold.backend.records] == ["built"] * 3
    files = sorted(p.name for p in backend.engine_dir.iterdir())
    assert len([f for f in files if f.endswith(".pt2")]) == 3
    assert len([f for f in files if f.endswith(".json")]) == 3
    assert not [f for f in files if ".tmp" in f]
    # another precision or another torch-tensorrt version is another engine
    other = TrtBackend(cache_dir=cold.cache, precision="fp32", toolchain=CpuToolchain())
    assert other.engine_path("trunk", cold.fp, (1, 3, *INPUT), {}) != \
        backend.engine_path("trunk", cold.fp, (1, 3, *INPUT), {})
    newer = TrtBackend(cache_dir=cold.cache, precision="fp16", toolchain=CpuToolchain("2.14.0"))
    assert newer.engine_dir != backend.engine_dir


@pytest.mark.slow
def test_engine_runs_and_hot_adds_without_rebuild(cold, bundles) -> None:
    """The real PerceptionEngine over the cached engines: warm start, inference close to the torch
    backend, and a hot-added task of an existing slot key (corridor, like lanes: k=2) builds
    nothing."""
    tool = _MemoToolchain()
    trt = PerceptionEngine(make_model(), TrtBackend(cache_dir=cold.cache, toolchain=tool),
                           tasks=["lanes"])
    ref = PerceptionEngine(make_model(), "torch", tasks=["lanes"])
    frame = np.random.default_rng(0).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    a, b = trt.infer(frame), ref.infer(frame)
    assert (a.raw["lanes"] == b.raw["lanes"]).mean() >= 0.99
    report = trt.add_task(bundles["corridor"])
    assert report.ok and not report.built_slot, report.message
    assert tool.builds == [] and "corridor" in trt.infer(frame).outputs


# -- (3) imports and errors without torch_tensorrt / CUDA ---------------------------------------------------------
def test_backend_modules_import_without_torch_tensorrt() -> None:
    code = ("import sys, perception.runtime.trt_backend, perception.runtime.trt_cache, "
            "perception.commands.build_engine; "
            "bad = [m for m in ('torch_tensorrt', 'tensorrt') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.skipif(HAS_CUDA and HAS_TORCH_TRT, reason="torch_tensorrt and CUDA are available")
def test_make_backend_names_the_fix() -> None:
    with pytest.raises((BackendError, MissingDependencyError)) as info:
        make_backend("tensorrt", precision="fp16")
    msg = str(info.value)
    assert "tad_perception[tensorrt]" in msg
    if not HAS_CUDA:
        assert "NVIDIA GPU" in msg and "onnxruntime" in msg and "is False" in msg
    with pytest.raises((BackendError, MissingDependencyError)):
        TrtBackend()


def test_torch_tensorrt_import_crash_becomes_backend_error(monkeypatch) -> None:
    """torch_tensorrt raises AssertionError/RuntimeError at import on a bad setup (notes §7)."""
    def crash(*args, **kwargs):
        raise AssertionError("Torch not compiled with CUDA enabled")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(trt_backend, "require", crash)
    with pytest.raises(BackendError, match="fails to import.*AssertionError"):
        TorchTensorRT.create()


def test_bad_precision_is_refused_before_any_gpu_work() -> None:
    with pytest.raises(BackendError, match="int8 is onnxruntime-only"):
        TrtBackend(precision="int8", toolchain=CpuToolchain())


# -- (4) slot plumbing with a recording stand-in for the compiled module -------------------------------------------
class _Recorder:
    """Stand-in for a compiled slot engine (no GPU in CI): records its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def __call__(self, *args):
        self.calls.append(args)
        return (torch.ones(1, 2, 4, 4),) + tuple(torch.full((1,), float(i)) for i in range(4))


def test_trt_slot_feeds_inputs_in_export_order() -> None:
    rec = _Recorder()
    slot = _TrtSlot(SlotKey("fusion", 2, 2), rec, num_trunk=3, num_sources=2,
                    weight_names=["head.a", "head.n"],
                    weight_specs=[((2, 3), torch.float32), ((), torch.int64)], device="cpu")
    w = [torch.randn(2, 3), torch.tensor(5)]
    prepared = slot.prepare(w)
    assert prepared[0].dtype == torch.float32 and prepared[1].dtype == torch.int64
    assert torch.equal(prepared[0], w[0]) and prepared[0].data_ptr() != w[0].data_ptr()  # a copy
    trunk = [torch.tensor([float(i)]) for i in range(3)]
    sources = [[torch.tensor([10.0 + i]) for i in range(4)], [torch.tensor([20.0 + i]) for i in range(4)]]
    out, feats = slot.run(trunk, sources, prepared)
    args = rec.calls[0]
    assert [float(a) for a in args[:3]] == [0, 1, 2]
    assert [float(a) for a in args[3:11]] == [10, 11, 12, 13, 20, 21, 22, 23]
    assert args[11] is prepared[0] and args[12] is prepared[1]
    assert out.shape == (1, 2, 4, 4) and [float(f) for f in feats] == [0, 1, 2, 3]
    with pytest.raises(BackendError, match="built for"):
        slot.prepare([torch.randn(3, 2), torch.tensor(1)])
    with pytest.raises(BackendError, match="2 weight tensors"):
        slot.prepare(w[:1])
    with pytest.raises(BackendError, match="3 trunk outputs"):
        slot.run(trunk[:2], sources, prepared)
    with pytest.raises(BackendError, match="2 source tasks"):
        slot.run(trunk, sources[:1], prepared)


def test_precision_policy_copies_and_casts() -> None:
    model = make_model()
    program = TrunkProgram(model)
    fp32 = trunk_module(program, FP32)
    half = trunk_module(program, FP16)
    assert next(model.parameters()).dtype == torch.float32  # the live model is untouched
    assert not any(isinstance(m, Fp32LayerNorm) for m in model.modules())
    norms = [m for m in half.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(isinstance(m, Fp32LayerNorm) and m.weight.dtype == torch.float32
                         for m in norms)
    others = [p for n, p in half.named_parameters() if "norm" not in n]
    assert others and all(p.dtype == torch.float16 for p in others)
    image = torch.randn(1, 3, *INPUT)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(fp32(image), program(image), strict=True))
    x = torch.randn(2, 8, dtype=torch.float16) * 300  # fp16 LayerNorm input, large values
    ln = Fp32LayerNorm(8)
    assert ln(x).dtype == torch.float16
    assert torch.allclose(ln(x).float(), nn.functional.layer_norm(x.float(), (8,)), atol=2e-3)


# -- cache mechanics on a tiny program (fast) ------------------------------------------------------------------------
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)

    def forward(self, x):
        return (self.norm(self.lin(x)),)


def _tiny_backend(cache: Path, tool=None) -> TrtBackend:
    return TrtBackend(cache_dir=cache, precision="fp16", toolchain=tool or CpuToolchain())


def _make_tiny() -> tuple[nn.Module, list[torch.Tensor]]:
    torch.manual_seed(0)
    return _Tiny().eval(), [torch.randn(2, 4)]


def test_damaged_cache_file_is_rebuilt_and_warm_start_loads(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="perception.runtime.trt_backend")
    tool = CpuToolchain()
    backend = _tiny_backend(tmp_path, tool)
    path = backend.engine_path("tiny", "f" * 64, (2, 4), {})
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an exported program")
    compiled = backend._engine("tiny", "f" * 64, (2, 4), {}, _make_tiny)
    assert len(tool.builds) == 1 and "cannot be loaded" in caplog.text
    assert "building TensorRT engine tiny 2x4 fp16" in caplog.text and "built TensorRT engine" in caplog.text
    manifest = path.with_suffix(".json").read_text()
    assert '"trunk_fingerprint": "ffff' in manifest and '"precision": "fp16"' in manifest
    x = torch.randn(2, 4)
    warm_tool = CpuToolchain()
    warm = _tiny_backend(tmp_path, warm_tool)
    again = warm._engine("tiny", "f" * 64, (2, 4), {}, _make_tiny)
    assert warm_tool.builds == [] and warm.records[0].action == "loaded"
    assert torch.equal(again(x)[0], compiled(x)[0])


def test_cache_write_is_atomic(tmp_path, caplog) -> None:
    class _Failing(CpuToolchain):
        def save(self, compiled, path, args):
            path.write_bytes(b"half a file")
            raise OSError("disk full")

    backend = _tiny_backend(tmp_path, _Failing())
    backend._engine("tiny", "f" * 64, (2, 4), {}, _make_tiny)
    assert backend.records[0].action == "built" and backend.records[0].cached is False
    assert "will be rebuilt on the next start" in caplog.text
    assert list(backend.engine_dir.iterdir()) == []  # no partial .pt2, no temp file, no manifest


def test_build_errors_name_the_program() -> None:
    class _Broken(CpuToolchain):
        def build(self, program, args, settings):
            raise RuntimeError("Could not find any implementation for node")

    backend = _tiny_backend(Path("/nonexistent-cache"), _Broken())
    with pytest.raises(BackendError, match=r"building the TensorRT engine tiny 2x4 fp16 failed.*"
                                           r"Could not find any implementation"):
        backend._engine("tiny", "f" * 64, (2, 4), {}, _make_tiny)


def test_run_trunk_checks_the_static_shape() -> None:
    backend = _tiny_backend(Path("/nonexistent-cache"))
    with pytest.raises(BackendError, match="before compile_trunk"):
        backend.run_trunk(torch.zeros(1, 3, 32, 32))
    backend._trunk, backend._trunk_shape = (lambda x: (x,)), (1, 3, 32, 32)
    with pytest.raises(InputError, match="static shapes"):
        backend.run_trunk(torch.zeros(2, 3, 32, 32))


def test_build_progress_heartbeat(caplog) -> None:
    caplog.set_level(logging.INFO, logger="perception.runtime.trt_backend")
    with _Heartbeat("trunk 1x3x256x512 fp16", interval_s=0.02):
        time.sleep(0.1)
    beats = [r.getMessage() for r in caplog.records if "still building" in r.getMessage()]
    assert beats and beats[0].startswith("still building trunk 1x3x256x512 fp16:")
    assert all("\r" not in b and "\n" not in b for b in beats)  # one line each: tqdm-safe


def test_build_engine_command_fails_clearly_without_gpu(tmp_path, capsys) -> None:
    if HAS_CUDA and HAS_TORCH_TRT:
        pytest.skip("torch_tensorrt and CUDA are available")
    from perception.cli import main

    code = main(["build-engine", "--config", "tiny", "--input-size", "128x256",
                 "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "tadp build-engine: error:" in err and "tad_perception[tensorrt]" in err
    assert main(["build-engine", "--config", "tiny", "--input-size", "100x256"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


# -- (5) on an NVIDIA GPU with torch-tensorrt -----------------------------------------------------------------------
@pytest.mark.trt
@needs_trt
def test_trt_settings_match_the_installed_version() -> None:
    tool = TorchTensorRT.create()
    s = tool.settings("fp16", Path("/tmp/tc.bin"))
    checked_settings(tool.tt.dynamo.compile, s, version=tool.environment().torch_trt_version)


@pytest.mark.trt
@needs_trt
def test_trt_engines_match_torch_and_warm_start(tmp_path) -> None:
    model = _fused_model()
    fp = trunk_fingerprint(model)
    example = torch.zeros(1, 3, *INPUT)
    image = torch.randn(1, 3, *INPUT, generator=torch.Generator().manual_seed(1))
    backend = TrtBackend(cache_dir=tmp_path, precision="fp16")
    trunk = TrunkProgram(model)
    backend.compile_trunk(trunk, example, fp)
    program = SlotProgram(model, "lanes", INPUT)
    args = _slot_args(model, program, "lanes", example)
    runner = backend.compile_slot(program, args, fp)
    assert all(r.action == "built" and r.cached and r.torch_segments == 0 for r in backend.records)
    n_in = program.num_trunk
    out, _ = runner.run(backend.run_trunk(image), [], runner.prepare(args[n_in:]))
    with torch.no_grad():
        ref_trunk = trunk(image)
        ref = program.features_and_output(*ref_trunk, *args[n_in:])[0]
    cos = torch.nn.functional.cosine_similarity(out.cpu().flatten(), ref.flatten(), dim=0)
    assert cos >= 0.99  # torch-tensorrt's own tests use this threshold
    warm = TrtBackend(cache_dir=tmp_path, precision="fp16")

    def no_build(*_: object, **__: object) -> None:
        raise AssertionError("a warm start must load the cached engines, not build them")

    warm.toolchain.build = no_build  # what makes a warm start fast, checked without a stopwatch
    warm.compile_trunk(trunk, example, fp)
    warm_runner = warm.compile_slot(program, args, fp)
    assert [r.action for r in warm.records] == ["loaded", "loaded"]
    again, _ = warm_runner.run(warm.run_trunk(image), [], warm_runner.prepare(args[n_in:]))
    assert torch.allclose(again, out)


@pytest.mark.trt
@needs_trt
def test_trt_hot_add_builds_nothing(tmp_path, bundles) -> None:
    engine = PerceptionEngine(make_model(), "tensorrt", precision="fp16", cache_dir=tmp_path,
                              tasks=["lanes"])
    report = engine.add_task(bundles["corridor"])
    assert report.ok and not report.built_slot, report.message
    assert len(engine.backend.records) == 2  # trunk + lanes slot, nothing for the hot-added task


@pytest.mark.slow
def test_a_shared_first_stage_slot_exports_and_passes_the_trunk_feature_through(tmp_path) -> None:
    """The shipped default's layout (``adapter.first_task_stage=1``): the slot's stage-0 feature is
    a trunk input returned as an output. It exports without data-dependent ops, runs through
    :class:`_TrtSlot`, and equals the eager fp16 policy module."""
    from perception.models.network import MultiTaskNet

    paper = make_model()
    model = MultiTaskNet(paper.cfg.replace(**{"adapter.first_task_stage": 1})).eval()
    model.load_state_dict(paper.state_dict(), strict=False)
    tool = CpuToolchain()
    backend = TrtBackend(cache_dir=tmp_path, precision="fp16", toolchain=tool)
    fp = trunk_fingerprint(model)
    image = torch.randn(1, 3, *INPUT, generator=torch.Generator().manual_seed(1))
    backend.compile_trunk(TrunkProgram(model), torch.zeros(1, 3, *INPUT), fp)
    program = SlotProgram(model, "lanes", INPUT)
    args = _slot_args(model, program, "lanes", torch.zeros(1, 3, *INPUT))
    runner = backend.compile_slot(program, args, fp)
    ep = tool.builds[-1][0]
    assert not [n for n in ep.graph.nodes if n.op == "call_function" and _op(n) in _DATA_DEPENDENT]
    trunk = backend.run_trunk(image)
    weights = args[program.num_trunk:]
    out, feats = runner.run(trunk, [], runner.prepare(weights))
    with torch.no_grad():
        eager = slot_module(program, FP16)(*trunk, *weights)
    assert torch.equal(feats[0], trunk[0])  # stage 0 is the trunk's own feature
    _close(out, eager[0], 2e-3)
