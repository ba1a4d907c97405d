"""PerceptionEngine: one trunk per frame for all tasks, tasks in hot-swappable slots.

``infer(frame)`` runs preprocessing, the trunk once, every active task's slot, and
post-processing. Slots run side by side when the backend allows it (``Backend.slot_workers``):
plain tasks first, then fusion tasks, which need their sources' features.

Tasks are added, replaced or removed while frames flow: the new task is verified (bundle
fingerprints and shapes), its slot program is built only if no task of the same structure exists
yet, its weights are prepared and a smoke inference runs - all on the caller's thread - and only
then is the active task tuple swapped, atomically between two frames. Any failure leaves the
engine serving exactly what it served before.

The smoke inference runs on the trunk outputs of the latest frame when there is one, so it is
also that frame's first output of the new task (``SwapReport.first_results``): a consumer gets
the new task within the call, without waiting for the camera's next frame (up to a period away)
and that frame's processing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import itertools
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception.errors import BundleError, ConfigError, PerceptionError
from perception.models.network import MultiTaskNet
from perception.runtime.backend import Backend, SlotRunner, make_backend
from perception.runtime.frames import Preprocessor, resize_output
from perception.runtime.slots import (
    SlotKey,
    SlotProgram,
    TrunkProgram,
    slot_key_of,
    task_weights,
)
from perception.tasks import TaskKind

__all__ = ["PerceptionEngine", "ActiveTask", "FrameResult", "SwapReport"]


def _load_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim", None)
    except OSError:
        return None


_MALLOC_TRIM = _load_trim()


def _trim_heap() -> None:
    """Give the allocator's free pages back after a swap (glibc only). A swap frees a task's
    modules and tensors while frames allocate on other threads; without this, RSS kept the
    freed pages and rose ~4 % over the first ten add/replace/remove cycles."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


# Frame numbers are unique in the process, across engines: a node that rebuilds its engine keeps
# seeing them grow, so "a newer frame of this task was already published" stays decidable.
_FRAME_NUMBERS = itertools.count(1)


@dataclass(frozen=True)
class ActiveTask:
    name: str
    kind: TaskKind
    cfg: Any
    key: SlotKey
    weights: Any  # backend-prepared
    sources: tuple[str, ...] = ()
    serial: int = 0  # unique per activation: tells a replaced task's frames from the old one's


@dataclass
class FrameResult:
    """Per-task outputs at the frame's resolution plus timings (ms)."""

    outputs: dict[str, np.ndarray]
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # network-resolution predictions
    timings_ms: dict[str, float] = field(default_factory=dict)
    polylines: list[np.ndarray] | None = None  # lanes in the vehicle frame, when calibrated
    tasks: dict[str, int] = field(default_factory=dict)  # task -> serial of the version that ran
    seq: int = 0  # frame number, growing within the process (a batch shares one; 0: not a frame)


@dataclass(frozen=True)
class SwapReport:
    operation: str
    task: str
    ok: bool
    latency_ms: float
    message: str = ""
    built_slot: bool = False
    serial: int = 0  # of the task version now active (add/replace), as in FrameResult.tasks
    # add/replace: the new task's outputs on the latest frame (one per frame of its batch, with that
    # frame's ``seq``), computed by the smoke inference; None before the first frame.
    first_results: list[FrameResult] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _Latest:
    """What a swap needs to run a new task on the latest frame: its trunk outputs, the stage
    features of its tasks (fusion sources), the frames' sizes and its number."""

    seq: int
    trunk: Any
    feats: dict[str, list[Any]]
    sizes: list[tuple[int, int]]


class PerceptionEngine:
    def __init__(self, model: MultiTaskNet, backend: str | Backend = "auto", *,
                 input_size: tuple[int, int] | None = None, tasks: Sequence[str] | None = None,
                 camera=None, mounting=None, undistort: bool = False, threads: int = 2,
                 precision: str = "fp32", cache_dir: Path | None = None) -> None:
        from perception.training.fingerprint import trunk_fingerprint

        self.model = model.eval()
        self.trunk_fp = trunk_fingerprint(model)  # before merging: bundles are checked against it
        model.merge_lora()
        self.input_size = tuple(input_size or model.cfg.input_size)
        self.backend = backend if isinstance(backend, Backend) else make_backend(
            backend, threads=threads, precision=precision, cache_dir=cache_dir)
        self.camera, self.mounting = camera, mounting
        undistorter = None
        if camera is not None and undistort:
            from calibration.undistort import Undistorter

            undistorter = Undistorter(camera)
            self.camera = undistorter.output_camera
        self.preprocess = Preprocessor(self.input_size, undistorter)
        self._lock = threading.Lock()  # serialises task changes, never held during a frame
        self._example = torch.zeros(1, 3, *self.input_size)
        self._trunk_program = TrunkProgram(model)
        self.backend.compile_trunk(self._trunk_program, self._example, self.trunk_fp)
        self._example_trunk = self.backend.run_trunk(self._example)
        self._slots: dict[SlotKey, SlotRunner] = {}
        self._serials = itertools.count(1)
        workers = self.backend.slot_workers
        self._slot_pool = (ThreadPoolExecutor(workers, thread_name_prefix="tadp-slot")
                           if workers > 1 else None)
        self._source_feats: dict[str, list[Any]] = {}  # per task, on the example trunk
        self._latest: _Latest | None = None
        self._active: tuple[ActiveTask, ...] = ()
        active = []
        for name in tasks if tasks is not None else model.task_names():
            active.append(self._activate(name)[0])
            self._active = tuple(active)  # fusion sources are found here
        self.last_swap: SwapReport | None = None
        # The model, programs and sessions built so far live as long as the engine. Taken out of
        # the cyclic collector's sight, they no longer make each full collection a 40-90 ms pause
        # that holds every thread (measured during hot-swap benchmarks: late frames and
        # 100+ ms swaps); what a swap creates later is still collected as usual.
        gc.collect()
        gc.freeze()

    # -- building blocks ---------------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return [t.name for t in self._active]

    def _slot(self, name: str) -> tuple[SlotRunner, bool]:
        key = slot_key_of(self.model, name)
        if key in self._slots:
            return self._slots[key], False
        program = SlotProgram(self.model, name, self.input_size)
        args = self._slot_args(program, name)
        runner = self.backend.compile_slot(program, args, self.trunk_fp)
        self._slots[key] = runner
        return runner, True

    def _slot_args(self, program: SlotProgram, name: str) -> list[torch.Tensor]:
        with torch.no_grad():
            trunk = self._trunk_program(self._example)
            sources = []
            for src in self.model.tasks[name].sources:
                sp = SlotProgram(self.model, src, self.input_size)
                w = task_weights(self.model, src)
                sources += list(sp.features_and_output(*trunk, *[w[k] for k in sp.weight_names])[1:])
        w = task_weights(self.model, name)
        return [*trunk, *sources, *[w[k] for k in program.weight_names]]

    def _activate(self, name: str) -> tuple[ActiveTask, bool, list[FrameResult] | None]:
        head = self.model.tasks[name]
        runner, built = self._slot(name)
        weights = task_weights(self.model, name)
        program_names = list(weights)  # task_weights order == SlotProgram.weight_names order
        prepared = runner.prepare([weights[k] for k in program_names])
        task = ActiveTask(name, head.kind, head.cfg, runner.key, prepared, head.sources,
                          serial=next(self._serials))
        return task, built, self._smoke(task)

    def _smoke(self, task: ActiveTask) -> list[FrameResult] | None:
        """Run the new task's slot once; a non-finite or mis-shaped output refuses it. On the
        latest frame's trunk when there is one (returning the task's results for that frame),
        else on the example trunk."""
        self._source_feats.pop(task.name, None)  # a replaced version's features are stale
        latest = self._latest
        if latest is not None and all(s in latest.feats for s in task.sources):
            trunk, sources = latest.trunk, [latest.feats[s] for s in task.sources]
        else:
            latest, trunk = None, self._example_trunk
            sources = [self._run_features(s) for s in task.sources]
        out, feats = self._slots[task.key].run(trunk, sources, task.weights)
        arr = self.backend.to_numpy(out)  # at the decoder's resolution: upsampling adds no check
        expected = (1 if latest is None else len(latest.sizes), task.kind.channels(task.cfg))
        if arr.ndim != 4 or tuple(arr.shape[:2]) != expected or not np.isfinite(arr).all():
            raise BundleError(f"task {task.name!r} failed its smoke inference: output shape "
                              f"{tuple(arr.shape)} (expected {expected} + h, w), "
                              f"finite={np.isfinite(arr).all()}")
        if latest is None:
            self._source_feats[task.name] = feats
            return None
        _, per_frame = self._finish(task, out, latest.sizes)
        return [FrameResult(outputs={task.name: out}, raw={task.name: pred},
                            tasks={task.name: task.serial}, seq=latest.seq)
                for pred, out in per_frame]

    def _run_features(self, name: str) -> list[Any]:
        """A source task's stage features on the example trunk (fusion smoke inferences)."""
        if name not in self._source_feats:
            source = next((t for t in self._active if t.name == name), None)
            if source is None:
                raise BundleError(f"fusion source {name!r} is not active")
            _, feats = self._slots[source.key].run(
                self._example_trunk, [self._run_features(s) for s in source.sources],
                source.weights)
            self._source_feats[name] = feats
        return self._source_feats[name]

    # -- inference -------------------------------------------------------------------------------------
    def infer(self, frame: np.ndarray, *, rgb: bool = False) -> FrameResult:
        """One uint8 [H, W, 3] frame (BGR unless ``rgb``) -> outputs at the frame's resolution."""
        return self.infer_batch([frame], rgb=rgb)[0]

    def infer_batch(self, frames: Sequence[np.ndarray], *, rgb: bool = False) -> list[FrameResult]:
        """Several frames at once; each result has the same layout as ``infer``. ``camera``
        (depth's scale, lane polylines) applies to every frame: batch one camera's frames, or
        frames of cameras with the same intrinsics. Backends with one-frame programs
        (``Backend.max_batch``) run them one after another."""
        if (parts := self._split(frames)) is not None:
            return [r for part in parts for r in self.infer_batch(part, rgb=rgb)]
        active = self._active  # snapshot: a swap during this frame takes effect on the next one
        sizes = [f.shape[:2] for f in frames]
        done, timings, seq = self._forward(frames, rgb, active, sizes)
        t3 = time.perf_counter()
        results = [FrameResult(outputs={}, seq=seq) for _ in sizes]
        for task in active:
            for r, (pred, out) in zip(results, done[task.name][1], strict=True):
                r.raw[task.name], r.outputs[task.name] = pred, out
        if self.camera is not None and self.mounting is not None:
            from calibration.lanes import mask_to_polylines

            net_cam = self.camera.resized(self.input_size[1], self.input_size[0])
            for r in results:
                if "lanes" in r.raw:
                    r.polylines = mask_to_polylines(r.raw["lanes"] > 0, net_cam, self.mounting)
        serial_ms = (time.perf_counter() - t3) * 1e3
        timings["postprocess"] += serial_ms  # the per-task part ran inside ``tasks``
        timings["total"] += serial_ms
        serials = {t.name: t.serial for t in active}
        for r in results:
            r.timings_ms, r.tasks = dict(timings), dict(serials)
        return results

    def logits(self, frames: Sequence[np.ndarray], *, rgb: bool = False) -> dict[str, torch.Tensor]:
        """Raw task outputs [B, K, h, w] at the network resolution (what evaluation scores)."""
        if (parts := self._split(frames)) is not None:
            outs = [self.logits(part, rgb=rgb) for part in parts]
            return {name: torch.cat([o[name] for o in outs]) for name in outs[0]}
        done, _, _ = self._forward(frames, rgb, self._active, None)
        return {name: logits.float() for name, (logits, _) in done.items()}

    def _split(self, frames: Sequence[np.ndarray]) -> list[Sequence[np.ndarray]] | None:
        """Batches the backend's programs can take (``Backend.max_batch``), or None if it takes
        ``frames`` whole."""
        limit = self.backend.max_batch
        if limit is None or len(frames) <= limit:
            return None
        return [frames[i:i + limit] for i in range(0, len(frames), limit)]

    def _forward(self, frames: Sequence[np.ndarray], rgb: bool, active: Sequence[ActiveTask],
                 sizes: list[tuple[int, int]] | None
                 ) -> tuple[dict[str, Any], dict[str, float], int]:
        """Per task (logits at network resolution, post-processed outputs per frame or None), the
        timings, and the frame number (0 without ``sizes``: evaluation, not a frame)."""
        t0 = time.perf_counter()
        images = self.preprocess.batch(list(frames), rgb)
        t1 = time.perf_counter()
        trunk = self.backend.run_trunk(images)
        t2 = time.perf_counter()
        done, task_ms, post_ms, feats = self._run_slots(trunk, active, sizes)
        t3 = time.perf_counter()
        seq = 0
        if sizes is not None:  # a swap runs its new task on this frame (see _smoke)
            seq = next(_FRAME_NUMBERS)
            self._latest = _Latest(seq, trunk, feats, list(sizes))
        timings = {"preprocess": (t1 - t0) * 1e3, "trunk": (t2 - t1) * 1e3,
                   "tasks": (t3 - t2) * 1e3, "total": (t3 - t0) * 1e3, **task_ms,
                   "postprocess": post_ms}
        return done, timings, seq

    def _run_slots(self, trunk: Any, active: Sequence[ActiveTask],
                   sizes: list[tuple[int, int]] | None
                   ) -> tuple[dict[str, Any], dict[str, float], float, dict[str, list[Any]]]:
        """Run every active task's slot, upsample its logits and (with ``sizes``) post-process them,
        in the slot workers. Returns {task: (logits, [(raw pred, output) per frame] or None)}, each
        task's time in ms, the longest post-processing time of one task (its share of
        ``tasks``; post-processing runs beside other tasks' slots) and each task's stage
        features."""
        feats: dict[str, list[Any]] = {}
        done: dict[str, Any] = {}
        task_ms: dict[str, float] = {}
        post_ms = 0.0

        def one(task: ActiveTask) -> tuple[str, Any, list[Any], float, float]:
            ts = time.perf_counter()
            out, f = self._slots[task.key].run(trunk, [feats[s] for s in task.sources], task.weights)
            tp = time.perf_counter()
            done = self._finish(task, out, sizes)
            te = time.perf_counter()
            return task.name, done, f, (te - ts) * 1e3, (te - tp) * 1e3

        # Fusion tasks never fuse fusion tasks: two waves cover every dependency.
        for wave in ([t for t in active if not t.sources], [t for t in active if t.sources]):
            pool = self._slot_pool if len(wave) > 1 else None
            for name, result, f, ms, post in (pool.map(one, wave) if pool else map(one, wave)):
                feats[name], done[name] = f, result
                task_ms[f"task/{name}"] = ms
                post_ms = max(post_ms, post)
        return {t.name: done[t.name] for t in active}, task_ms, post_ms, feats

    def _finish(self, task: ActiveTask, out: Any, sizes: list[tuple[int, int]] | None
                ) -> tuple[torch.Tensor, list[tuple[np.ndarray, np.ndarray]] | None]:
        """A slot's output -> (logits at the input size, post-processed per frame or None)."""
        logits = task.kind.upsample(self.backend.to_torch(out), self.input_size, task.cfg)
        return logits, None if sizes is None else self._postprocess(task, logits, sizes)

    @property
    def focal_px(self) -> float | None:
        """The camera's vertical focal length at the network input, None without a camera:
        metric outputs (depth) follow it (``TaskKind.postprocess``). Frames are the camera's
        image at any size, so it is ``fy`` scaled from the camera's height to the input's."""
        camera = self.camera
        return None if camera is None else camera.fy * self.input_size[0] / camera.height

    @property
    def height_m(self) -> float | None:
        """The camera's mounting height above the ground (m), None without a mounting: depth of
        a model trained with a height rule follows it (``perception.tasks.depth``)."""
        return None if self.mounting is None else float(self.mounting.z_m)

    def _postprocess(self, task: ActiveTask, logits: torch.Tensor, sizes: list[tuple[int, int]]
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(prediction at network resolution, at the frame's resolution) per frame."""
        pred = task.kind.postprocess(logits, task.cfg, focal_px=self.focal_px,
                                     height_m=self.height_m).cpu().numpy()
        if pred.ndim == 4:  # vector outputs (normals) [B, C, h, w] -> [B, h, w, C]
            pred = np.ascontiguousarray(pred.transpose(0, 2, 3, 1))
        return [(pred[b], resize_output(pred[b], size, task.kind.output_type))
                for b, size in enumerate(sizes)]

    # -- hot swap ----------------------------------------------------------------------------------------
    def add_task(self, bundle: Any) -> SwapReport:
        """Add a task from a bundle (path or :class:`~perception.training.bundle.Bundle`)."""
        return self._swap("add", bundle)

    def replace_task(self, bundle: Any) -> SwapReport:
        """Replace the active task of the bundle's name by the bundle's version."""
        return self._swap("replace", bundle)

    def remove_task(self, name: str) -> SwapReport:
        t0 = time.perf_counter()
        with self._lock:
            if name not in self.tasks:
                raise ConfigError(f"task {name!r} is not active; active: {self.tasks}")
            users = [t.name for t in self._active if name in t.sources]
            if users:
                raise ConfigError(f"task {name!r} is fused by {users}; remove those first")
            self._active = tuple(t for t in self._active if t.name != name)
            if name in self.model.tasks:
                self.model.remove_task(name)
            self._source_feats.pop(name, None)
            report = SwapReport("remove", name, True, (time.perf_counter() - t0) * 1e3)
            self.last_swap = report
        _trim_heap()
        return report

    def _swap(self, operation: str, bundle: Any) -> SwapReport:
        from perception.training.bundle import Bundle, load_bundle_into, read_bundle

        t0 = time.perf_counter()
        name = "?"
        with self._lock:
            try:
                if not isinstance(bundle, Bundle):
                    bundle = read_bundle(bundle)
                name = bundle.name
                old_head = old_group = None
                if operation == "add" and name in self.tasks:
                    raise BundleError(f"task {name!r} is already active; use replace_task")
                if operation == "replace":
                    if name not in self.tasks:
                        raise BundleError(f"task {name!r} is not active; use add_task")
                    users = [t.name for t in self._active if name in t.sources]
                    if users:
                        raise BundleError(f"task {name!r} is fused by {users}; remove those first")
                    old_head = self.model.tasks[name]
                    old_group = self.model.groups[name] if name in self.model.groups else None
                    self.model.remove_task(name)
                try:
                    # The model keeps unmerged-fingerprint semantics through trunk_fp.
                    load_bundle_into(self.model, bundle, trunk_fp=self.trunk_fp)
                    task, built, first = self._activate(name)
                except BaseException:
                    if name in self.model.tasks and self.model.tasks[name] is not old_head:
                        self.model.remove_task(name)
                    if old_head is not None:
                        self.model.tasks[name] = old_head
                        if old_group is not None:
                            self.model.groups[name] = old_group
                    raise
                if operation == "replace":
                    self._active = tuple(task if t.name == name else t for t in self._active)
                else:
                    self._active = self._active + (task,)
                report = SwapReport(operation, name, True, (time.perf_counter() - t0) * 1e3,
                                    built_slot=built, serial=task.serial, first_results=first)
            except PerceptionError as err:
                report = SwapReport(operation, name, False, (time.perf_counter() - t0) * 1e3,
                                    message=str(err))
            self.last_swap = report
        _trim_heap()
        return report
