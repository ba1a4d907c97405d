"""Frame statistics of the perception node and their ``diagnostic_msgs/DiagnosticStatus``.

:class:`FrameStats` is updated from three threads (subscription callback, inference worker,
control thread) under one lock; :meth:`FrameStats.snapshot` is read by the diagnostics timer.
Latencies are kept for the last ``window`` frames:

* ``latency`` - input header stamp -> the frame's outputs published (what a consumer sees;
  assumes the camera and the node share a clock, as Autoware's ``pipeline_latency_ms``);
* ``node`` - message received by the node -> outputs published;
* ``engine`` - ``PerceptionEngine.infer`` alone; ``overhead`` = node - engine (decode, queueing,
  colouring, message building, publishing).

The status level is ERROR when a bundle failed or invalid input arrived in the last period,
WARN while starting, without input, or when frames were dropped, else OK.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

__all__ = ["FrameStats", "NodeState", "build_status"]

_COUNTERS = ("received", "processed", "dropped", "lost", "invalid", "not_ready", "failed")


def _pct(values: deque, q: float) -> float | None:
    return float(np.percentile(np.fromiter(values, float), q)) if values else None


class FrameStats:
    """Counters and latency windows; every method is thread-safe and O(1) except snapshot."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self._window = window
        self.latency_ms: deque[float] = deque(maxlen=window)
        self.node_ms: deque[float] = deque(maxlen=window)
        self.engine_ms: deque[float] = deque(maxlen=window)
        self.task_ms: dict[str, deque[float]] = {}
        self.last_error = ""
        self._period_start = time.monotonic()
        self._period_counts = dict(self.counts)
        self._period_error = ""

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    def error(self, what: str, message: str) -> None:
        """Count an invalid input (``invalid``) or a failed inference (``failed``)."""
        with self._lock:
            self.counts[what] += 1
            self.last_error = self._period_error = message

    def processed(self, latency_ms: float, node_ms: float, engine_ms: float,
                  task_ms: Mapping[str, float]) -> None:
        with self._lock:
            self.counts["processed"] += 1
            self.latency_ms.append(latency_ms)
            self.node_ms.append(node_ms)
            self.engine_ms.append(engine_ms)
            for name, ms in task_ms.items():
                self.task_ms.setdefault(name, deque(maxlen=self._window)).append(ms)

    def forget_task(self, name: str) -> None:
        with self._lock:
            self.task_ms.pop(name, None)

    def snapshot(self) -> dict[str, Any]:
        """Totals, per-period deltas and rates since the previous snapshot, percentiles."""
        with self._lock:
            now = time.monotonic()
            elapsed = max(now - self._period_start, 1e-6)
            period = {k: self.counts[k] - self._period_counts[k] for k in _COUNTERS}
            snap = {
                "totals": dict(self.counts),
                "period": period,
                "period_s": elapsed,
                "input_rate_hz": period["received"] / elapsed,
                "output_rate_hz": period["processed"] / elapsed,
                "latency_p50_ms": _pct(self.latency_ms, 50),
                "latency_p99_ms": _pct(self.latency_ms, 99),
                "node_p50_ms": _pct(self.node_ms, 50),
                "engine_p50_ms": _pct(self.engine_ms, 50),
                "engine_p99_ms": _pct(self.engine_ms, 99),
                "task_p50_ms": {k: _pct(v, 50) for k, v in self.task_ms.items()},
                "last_error": self.last_error,
                "period_error": self._period_error,
            }
            overhead = [n - e for n, e in zip(self.node_ms, self.engine_ms, strict=True)]
            snap["overhead_p50_ms"] = float(np.median(overhead)) if overhead else None
            self._period_start, self._period_counts = now, dict(self.counts)
            self._period_error = ""
            return snap


@dataclass
class NodeState:
    """What the node tells diagnostics besides frame statistics."""

    engine: str = "starting"  # "starting" | "ready" | "failed: <why>"
    backend: str = "-"
    active_tasks: list[str] = field(default_factory=list)
    input_topic: str = ""
    camera_info: str = "none yet (depth keeps the training cameras' scale; lanes/path needs CameraInfo and a mounting)"
    last_swap: str = "none"
    bundle_errors: dict[str, str] = field(default_factory=dict)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def build_status(name: str, snap: Mapping[str, Any], state: NodeState,
                 hardware_id: str = "") -> DiagnosticStatus:
    """One ``DiagnosticStatus`` with the level, a one-line summary and every figure as values."""
    period, totals = snap["period"], snap["totals"]
    problems: list[tuple[bytes, str]] = []
    if state.engine.startswith("failed"):
        problems.append((DiagnosticStatus.ERROR, f"engine {state.engine}"))
    elif state.engine != "ready":
        problems.append((DiagnosticStatus.WARN, f"engine {state.engine}"))
    for task, msg in sorted(state.bundle_errors.items()):
        problems.append((DiagnosticStatus.ERROR, f"task {task!r}: {msg}"))
    if period["invalid"] or period["failed"]:
        n = period["invalid"] + period["failed"]
        problems.append((DiagnosticStatus.ERROR,
                         f"{n} input frame(s) rejected in the last {snap['period_s']:.1f} s: "
                         f"{snap['period_error']}"))
    if state.engine == "ready" and not period["received"]:
        problems.append((DiagnosticStatus.WARN, f"no input on {state.input_topic}"))
    if period["dropped"] or period["lost"]:
        problems.append((DiagnosticStatus.WARN,
                         f"{period['dropped']} frame(s) dropped (node busy), {period['lost']} lost "
                         "before the node (transport/reader queue) in the last period"))
    level = max((lvl for lvl, _ in problems), default=DiagnosticStatus.OK)
    worst = [m for lvl, m in problems if lvl == level]
    message = "; ".join(worst) if worst else (
        f"{snap['output_rate_hz']:.1f} Hz, latency p50 {_fmt(snap['latency_p50_ms'])} ms")
    values = {
        "engine": state.engine,
        "backend": state.backend,
        "active_tasks": ", ".join(state.active_tasks),
        "input_topic": state.input_topic,
        "input_rate_hz": f"{snap['input_rate_hz']:.2f}",
        "output_rate_hz": f"{snap['output_rate_hz']:.2f}",
        "latency_p50_ms": _fmt(snap["latency_p50_ms"]),
        "latency_p99_ms": _fmt(snap["latency_p99_ms"]),
        "node_p50_ms": _fmt(snap["node_p50_ms"]),
        "engine_p50_ms": _fmt(snap["engine_p50_ms"]),
        "engine_p99_ms": _fmt(snap["engine_p99_ms"]),
        "overhead_p50_ms": _fmt(snap["overhead_p50_ms"]),
        **{f"task_ms/{k}": _fmt(v) for k, v in sorted(snap["task_p50_ms"].items())},
        "frames_received": str(totals["received"]),
        "frames_processed": str(totals["processed"]),
        "frames_dropped": str(totals["dropped"]),
        "frames_lost": str(totals["lost"]),
        "frames_invalid": str(totals["invalid"]),
        "frames_failed": str(totals["failed"]),
        "frames_not_ready": str(totals["not_ready"]),
        "last_input_error": snap["last_error"] or "none",
        "camera_info": state.camera_info,
        "last_swap": state.last_swap,
        "bundle_errors": "; ".join(f"{k}: {v}" for k, v in sorted(state.bundle_errors.items()))
                         or "none",
    }
    status = DiagnosticStatus(level=level, name=name, message=message[:1000],
                              hardware_id=hardware_id)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return status
