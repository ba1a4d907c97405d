"""Frame schedules: drives through one world (bags) and many short drives (image datasets), and
rendering them in order, optionally in worker processes.

Every frame is a pure function of ``(seed, world index, frame index)``, so the result does not
depend on the number of workers: the same seed gives byte-identical output.

Example:
    >>> for frame in iter_sequence(seed=3, frames=20, fps=10.0):
    ...     print(frame.stamp_ns, frame.meta["t_s"])
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from perception.data.synthetic.blas import set_blas_threads, single_threaded_blas
from perception.data.synthetic.config import SynthConfig
from perception.data.synthetic.memory import keep_freed_memory
from perception.data.synthetic.renderer import Frame, render
from perception.data.synthetic.world import World, generate_world
from perception.errors import ConfigError

__all__ = ["FrameJob", "START_STAMP_NS", "sequence_jobs", "dataset_jobs", "render_job", "iter_frames",
           "iter_sequence", "default_workers"]

# Fixed start time (2024-01-01T00:00:00Z) so bags are reproducible byte for byte.
START_STAMP_NS = 1_704_067_200_000_000_000
_DATASET_FRAME_GAP_S = 2.0  # frames of one dataset world are this far apart in time


@dataclass(frozen=True)
class FrameJob:
    """What to render: world ``(seed, world_index)`` at ``t_s``, with its stamp and frame seed."""

    seed: int
    world_index: int
    duration_s: float
    speed_mps: float | None
    t_s: float
    frame_index: int
    stamp_ns: int
    config: SynthConfig


def _world_seed(seed: int, world_index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(world_index)])


@lru_cache(maxsize=2)
def _world(seed: int, world_index: int, duration_s: float, speed_mps: float | None,
           config: SynthConfig) -> World:
    return generate_world(_world_seed(seed, world_index), config, duration_s=duration_s, speed_mps=speed_mps)


def sequence_world(seed: int, frames: int, fps: float, config: SynthConfig,
                   speed_mps: float | None = None) -> World:
    """The world :func:`sequence_jobs` drives through with the same arguments (its camera and
    mounting are what a robot's calibration would give the node)."""
    job = sequence_jobs(seed, frames, fps, config, speed_mps)[0]
    return _world(job.seed, job.world_index, job.duration_s, job.speed_mps, job.config)


def render_job(job: FrameJob) -> Frame:
    with single_threaded_blas():
        world = _world(job.seed, job.world_index, job.duration_s, job.speed_mps, job.config)
        return render(world, job.t_s, frame_seed=job.frame_index, stamp_ns=job.stamp_ns)


def sequence_jobs(seed: int, frames: int, fps: float, config: SynthConfig, speed_mps: float | None = None,
                  start_ns: int = START_STAMP_NS) -> list[FrameJob]:
    """One continuous drive: ``frames`` frames at ``fps`` through world 0 of ``seed``.

    Raises:
        ConfigError: non-positive frame count or rate, or a negative speed.
    """
    if frames < 1:
        raise ConfigError(f"frames must be >= 1, got {frames!r}")
    if not fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps!r}")
    if speed_mps is not None and speed_mps < 0:
        raise ConfigError(f"speed must be >= 0 m/s, got {speed_mps!r}")
    period_ns = int(round(1e9 / fps))
    duration = (frames - 1) * period_ns / 1e9
    return [FrameJob(int(seed), 0, duration, speed_mps, k * period_ns / 1e9, k, start_ns + k * period_ns, config)
            for k in range(frames)]


def dataset_jobs(seed: int, n: int, config: SynthConfig, frames_per_world: int = 8) -> list[FrameJob]:
    """``n`` frames from short drives through ``ceil(n / frames_per_world)`` different worlds.

    Raises:
        ConfigError: non-positive ``n`` or ``frames_per_world``.
    """
    if n < 1:
        raise ConfigError(f"the number of frames must be >= 1, got {n!r}")
    if frames_per_world < 1:
        raise ConfigError(f"frames_per_world must be >= 1, got {frames_per_world!r}")
    jobs = []
    duration = (frames_per_world - 1) * _DATASET_FRAME_GAP_S
    for i in range(n):
        w, k = divmod(i, frames_per_world)
        t = k * _DATASET_FRAME_GAP_S
        jobs.append(FrameJob(int(seed), w, duration, None, t, i, START_STAMP_NS + int(round(t * 1e9)), config))
    return jobs


def default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))


def _init_worker(blas: bool = True) -> None:
    import cv2

    keep_freed_memory()
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would only contend
    if blas:
        set_blas_threads(1)  # the same for NumPy's BLAS (render() does it for its own duration anyway)


def iter_frames(jobs: Sequence[FrameJob], workers: int = 1,
                fn: Callable[[FrameJob], Any] = render_job) -> Iterator[Any]:
    """Apply ``fn`` (default: render) to the jobs in order, in ``workers`` processes.

    Jobs of one world are kept together per worker so each worker builds each world once.
    """
    if workers <= 1 or len(jobs) < 2:
        _init_worker(blas=False)
        for job in jobs:
            yield fn(job)
        return
    from perception.data.synthetic import kernels

    kernels.warm_up()  # compile or load the compiled kernels once, here, before forking workers
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    # Chunks follow world boundaries where possible: a worker renders whole short drives.
    chunk = max(1, min(16, len(jobs) // (4 * workers) or 1))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
        yield from pool.map(fn, jobs, chunksize=chunk)


def iter_sequence(seed: int, frames: int, fps: float, config: SynthConfig | None = None,
                  speed_mps: float | None = None, workers: int = 1) -> Iterator[Frame]:
    """Render a continuous drive; see :func:`sequence_jobs`."""
    yield from iter_frames(sequence_jobs(seed, frames, fps, config or SynthConfig(), speed_mps), workers)
