"""Benchmarks behind ``tadp benchmark``: latency tables and the hot-swap frame loop.

Numbers are printed, never asserted: timings belong in benchmarks, not in pass/fail tests.
"""
from __future__ import annotations

import copy
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from perception.config import TaskConfig
from perception.models.network import MultiTaskNet
from perception.runtime.engine import PerceptionEngine

__all__ = ["rss_mb", "LatencyRow", "latency_table", "HotswapReport", "hotswap_loop",
           "make_demo_bundles"]


def rss_mb() -> float:
    """Current resident set size of this process (Linux /proc), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class LatencyRow:
    backend: str
    size: str
    tasks: int
    layout: str  # "shared" (one trunk) or "separate" (one model per task)
    p50_ms: float
    p99_ms: float
    fps: float
    rss_mb: float
    stages_ms: dict[str, float] = field(default_factory=dict)


def _time(fn: Callable[[], dict[str, float] | None], runs: int, warmup: int
          ) -> tuple[np.ndarray, dict[str, float]]:
    for _ in range(warmup):
        fn()
    times, stages = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        st = fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if st:
            stages.append(st)
    med = {k: float(np.median([s[k] for s in stages])) for k in (stages[0] if stages else {})
           if not k.startswith("task/")}
    return np.array(times), med


def _subset(model: MultiTaskNet, names: Sequence[str]) -> MultiTaskNet:
    sub = copy.deepcopy(model)
    for name in list(sub.tasks):
        if name not in names:
            sub.remove_task(name)
    return sub


def latency_table(model: MultiTaskNet, frame: np.ndarray, backends: Sequence[str],
                  sizes: Sequence[tuple[int, int]], task_counts: Sequence[int], *,
                  runs: int = 30, warmup: int = 5, threads: int = 2, precision: str = "fp32",
                  cache_dir: Path | None = None, separate: bool = True,
                  log: Callable[[str], None] = print) -> list[LatencyRow]:
    """End-to-end ``infer`` latency (pre- and post-processing included) for each combination,
    with all tasks on one trunk and, for comparison, as separate single-task models."""
    rows = []
    names = model.task_names()
    for backend in backends:
        for size in sizes:
            for n in task_counts:
                chosen = names[:n]
                eng = PerceptionEngine(_subset(model, chosen), backend, input_size=size,
                                       threads=threads, precision=precision, cache_dir=cache_dir)
                times, stages = _time(lambda e=eng: e.infer(frame).timings_ms, runs, warmup)
                rows.append(LatencyRow(backend, f"{size[0]}x{size[1]}", n, "shared",
                                       float(np.median(times)), float(np.percentile(times, 99)),
                                       1e3 / float(np.median(times)), rss_mb(), stages))
                log(_fmt(rows[-1]))
                del eng
                if separate and n > 1:
                    engines = [PerceptionEngine(_subset(model, [t]), backend, input_size=size,
                                                threads=threads, precision=precision,
                                                cache_dir=cache_dir) for t in chosen]
                    times, _ = _time(lambda es=engines: [e.infer(frame) for e in es] and None,
                                     runs, warmup)
                    rows.append(LatencyRow(backend, f"{size[0]}x{size[1]}", n, "separate",
                                           float(np.median(times)),
                                           float(np.percentile(times, 99)),
                                           1e3 / float(np.median(times)), rss_mb()))
                    log(_fmt(rows[-1]))
                    del engines
    return rows


def _fmt(r: LatencyRow) -> str:
    return (f"{r.backend:<12}{r.size:>9}{r.tasks:>6}  {r.layout:<9}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}"
            f"{r.fps:>8.1f}{r.rss_mb:>9.0f}")


TABLE_HEADER = (f"{'backend':<12}{'size':>9}{'tasks':>6}  {'layout':<9}{'p50 ms':>9}{'p99 ms':>9}"
                f"{'FPS':>8}{'RSS MB':>9}")


def make_demo_bundles(model: MultiTaskNet, out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Two versions of an (untrained, random) ``corridor`` task as bundles, for swap timing when no
    trained bundle is given."""
    from perception.training.bundle import save_bundle

    paths = {}
    for version in (1, 2):
        m = copy.deepcopy(model)
        m.unmerge_lora()
        head = m.add_task(TaskConfig(name="corridor", kind="mask"))
        g = torch.Generator().manual_seed(seed + version)
        with torch.no_grad():
            for p in head.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        paths[f"v{version}"] = save_bundle(m, "corridor", out_dir / f"corridor_v{version}.tadtask")
    bad = out_dir / "corrupt.tadtask"
    import shutil

    shutil.copytree(paths["v1"], bad)
    (bad / "weights.safetensors").write_bytes(b"\0garbage")
    paths["corrupt"] = bad
    return paths


@dataclass
class HotswapReport:
    rate_hz: float
    frames: int
    late: int  # frames that started later than one period after their schedule
    skipped: int  # schedule slots missed entirely
    operations: list[dict] = field(default_factory=list)
    others_identical: bool = True
    rss_start_mb: float = 0.0
    rss_warm_mb: float = 0.0  # after the first add/replace/remove cycle (its slot program is built)
    rss_end_mb: float = 0.0
    rss_cycles_mb: list[float] = field(default_factory=list)  # after each cycle

    def to_dict(self) -> dict:
        return asdict(self)


def hotswap_loop(engine: PerceptionEngine, frame: np.ndarray, bundles: dict[str, Path], *,
                 rate_hz: float = 10.0, cycles: int = 1, settle_s: float = 1.0,
                 frames: int | None = None) -> HotswapReport:
    """Run frames at ``rate_hz`` on a thread while the caller adds, replaces and removes a task
    (``cycles`` times), then tries a corrupt bundle. Measures each operation from the call to the
    first frame that carries the new task set (the new *version* for a replace), frames late or
    skipped, and whether the base tasks' outputs stayed bit-identical. ``clock_wait_ms`` is the
    part of ``to_first_frame_ms`` spent waiting for the next frame of the ``rate_hz`` clock after
    the call returned; the rest is the call and that frame's own processing. An add or replace
    also returns the new task's output on the latest frame (``SwapReport.first_results``):
    ``first_output_ms`` is the call to that output, ``first_output_frame_age_ms`` how long before
    the call that frame had started. Memory growth is
    judged from ``rss_warm_mb`` (after the first cycle, which builds the new task's slot program
    once) to ``rss_end_mb``."""
    period = 1.0 / rate_hz
    base = engine.infer(frame)
    base_names = set(base.raw)
    log: list[tuple[float, float, dict[str, int], int]] = []  # (start, end, task -> serial, seq)
    stats = {"late": 0, "skipped": 0, "n": 0, "identical": True}
    stop = threading.Event()

    def loop() -> None:
        start = time.perf_counter()
        k = 0
        while not stop.is_set() and (frames is None or stats["n"] < frames):
            due = start + k * period
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            elif now - due > period:
                missed = int((now - due) // period)
                stats["skipped"] += missed
                k += missed
                due = start + k * period
            if time.perf_counter() - due > 0.5 * period:
                stats["late"] += 1
            t_start = time.perf_counter()
            res = engine.infer(frame)
            log.append((t_start, time.perf_counter(), res.tasks, res.seq))
            for name in base_names:
                if not np.array_equal(res.raw[name], base.raw[name]):
                    stats["identical"] = False
            stats["n"] += 1
            k += 1

    report = HotswapReport(rate_hz=rate_hz, frames=0, late=0, skipped=0, rss_start_mb=rss_mb())
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def first_frame_with(pred: Callable[[dict[str, int], object], bool], rep: object, after: float,
                         first: int) -> tuple[float, float] | None:
        """(start, end) of the first frame started after ``after`` that satisfies ``pred``; the
        log is scanned from entry ``first`` on (earlier ones started before the call) and only
        once per entry, so polling does not take the GIL from the frame loop for long."""
        deadline = time.perf_counter() + 10
        i = first
        while time.perf_counter() < deadline:
            while i < len(log):
                start, end, tasks, _ = log[i]
                if start >= after and pred(tasks, rep):
                    return start, end
                i += 1
            time.sleep(0.005)
        return None

    def op(name: str, call: Callable[[], object], pred) -> None:
        first = len(log)
        t0 = time.perf_counter()
        rep = call()
        t_call = time.perf_counter()
        ok = getattr(rep, "ok", True)
        seen = first_frame_with(pred, rep, t0, first) if ok else None
        firsts = getattr(rep, "first_results", None) if ok else None
        started = {seq: start for start, _, _, seq in log[max(0, first - 2):]}
        report.operations.append({
            "operation": name, "ok": bool(ok), "call_ms": (t_call - t0) * 1e3,
            "first_output_ms": (t_call - t0) * 1e3 if firsts else None,
            "first_output_frame_age_ms": ((t0 - started[firsts[0].seq]) * 1e3
                                          if firsts and firsts[0].seq in started else None),
            "to_first_frame_ms": (seen[1] - t0) * 1e3 if seen else None,
            "clock_wait_ms": max(0.0, seen[0] - t_call) * 1e3 if seen else None,
            "message": getattr(rep, "message", ""),
        })
        time.sleep(settle_s)

    def carries(tasks: dict[str, int], rep: object) -> bool:
        return tasks.get("corridor") == getattr(rep, "serial", None)

    time.sleep(settle_s)
    try:
        for _ in range(cycles):
            op("add", lambda: engine.add_task(bundles["v1"]), carries)
            op("replace", lambda: engine.replace_task(bundles["v2"]), carries)
            op("remove", lambda: engine.remove_task("corridor"), lambda tasks, _: "corridor" not in tasks)
            report.rss_cycles_mb.append(rss_mb())
            report.rss_warm_mb = report.rss_warm_mb or report.rss_cycles_mb[-1]
        op("add corrupt", lambda: engine.add_task(bundles["corrupt"]), lambda tasks, _: True)
        if frames is not None:
            while thread.is_alive() and stats["n"] < frames:
                time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=30)
    report.frames, report.late, report.skipped = stats["n"], stats["late"], stats["skipped"]
    report.others_identical = stats["identical"]
    report.rss_end_mb = rss_mb()
    return report


def temp_bundles(model: MultiTaskNet) -> tuple[tempfile.TemporaryDirectory, dict[str, Path]]:
    tmp = tempfile.TemporaryDirectory(prefix="tadp-bench-")
    return tmp, make_demo_bundles(model, Path(tmp.name))
