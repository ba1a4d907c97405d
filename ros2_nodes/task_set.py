"""Which tasks the node runs: the ``tasks`` parameter and ``adapters_dir`` applied to the engine.

Plain Python, no rclpy, so the decisions can be read (and tested) apart from the ROS plumbing: the
node passes its publishers in as :class:`OutputHooks` and its logger in as ``log``.

:meth:`TaskSet.run` is the node's **control thread**. Building the engine, reading and verifying
bundles and ``engine.add_task`` run there, never on the inference worker; the engine swaps its task
list atomically between two frames, and a rebuilt engine becomes :attr:`TaskSet.engine` only once
it is complete.
"""
from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perception.errors import ConfigError, PerceptionError
from ros2_nodes.adapters_watch import AdaptersWatcher, scan_bundles
from ros2_nodes.params import ALL_TASKS, NodeParams

if TYPE_CHECKING:
    from ros2_nodes.diagnostics import NodeState

__all__ = ["OutputHooks", "SwapOutcome", "TaskSet"]


@dataclass
class SwapOutcome:
    """What one round of task changes did; the reload service returns it."""

    ok: bool
    message: str


@dataclass
class _Request:
    reason: str  # "params" | "reload" | "outputs"
    force: bool = False
    future: Any = None  # rclpy Future completed by the control thread


@dataclass(frozen=True)
class OutputHooks:
    """The node's publishers, as seen by the task set (ROS stays in the node)."""

    ensure: Callable[[str, Any], None]  # (task, task config): ~/<task> exists and colours right
    drop: Callable[[str], None]  # destroy ~/<task>* and forget its statistics
    refresh: Callable[[], None]  # ~/<task>/color after a task or colour change
    names: Callable[[], list[str]]  # tasks that have publishers now
    # a swap's first_results: publish a new task's output on the latest frame
    first: Callable[[list[Any]], None] = lambda results: None


class TaskSet:
    """Builds the engine and keeps its tasks in line with ``tasks`` and ``adapters_dir``.

    Args:
        params: returns the node's current parameters.
        base_names: the tasks of the model file.
        model_path: the model file; read again for every rebuild.
        first_model: the already loaded model; the first engine is built from it.
        mounting: camera mounting handed to every engine.
        state: the node's diagnostics state; ``engine``, ``backend``, ``last_swap``,
            ``active_tasks`` and ``bundle_errors`` are written here.
        outputs: the node's publisher hooks.
        log: the node's logger (``info``/``error``).
        log_error: rate-limited error log ``(key, message)``.
    """

    def __init__(self, *, params: Callable[[], NodeParams], base_names: list[str],
                 model_path: Path, first_model: Any, mounting: Any, state: NodeState,
                 outputs: OutputHooks, log: Any, log_error: Callable[[str, str], None]) -> None:
        self._params = params
        self._base_names = base_names
        self._model_path = model_path
        self._first_model: Any = first_model
        self._mounting = mounting
        self._state = state
        self._outputs = outputs
        self._log = log
        self._log_error = log_error
        self.engine: Any = None  # serving frames now; the worker reads it for every frame
        self._stop = False
        self._loaded: dict[str, tuple[int, int, int]] = {}  # bundle task -> file signature
        self._failed: dict[str, tuple[tuple[int, int, int], str]] = {}  # name -> (sig, why)
        self._requests: queue.Queue[_Request] = queue.Queue()
        self._watcher = AdaptersWatcher(params().adapters_dir)

    def request(self, reason: str, *, force: bool = False, future: Any = None) -> None:
        """Queue a change for the control thread; ``future`` gets the :class:`SwapOutcome`."""
        self._requests.put(_Request(reason, force=force, future=future))

    def stop(self) -> None:
        """Make :meth:`run` return within ``adapters_poll_s``; an unfinished rebuild is dropped."""
        self._stop = True

    def run(self) -> None:
        """The control thread: build the engine, then apply requests and adapters_dir changes."""
        cfg = self._params()
        try:
            self._reconcile(force=True, initial=True)
        except Exception as err:  # noqa: BLE001 - reported; the node keeps running
            self._state.engine = f"failed: {err}"
            self._log.error(f"engine build failed: {err}; fix the parameters and call "
                            f"~/reload_tasks")
        while not self._stop:
            try:
                request = self._requests.get(timeout=cfg.adapters_poll_s)
            except queue.Empty:
                request = None
            if self._stop:
                break
            requests = [request] if request is not None else []
            try:
                if request is None:
                    changes = self._watcher.poll()
                    if changes:
                        self._log.info(
                            f"adapters_dir: added {[b.name for b in changes.added]}, changed "
                            f"{[b.name for b in changes.changed]}, removed {changes.removed}")
                        self._reconcile(force=False)
                    continue
                while not self._requests.empty():  # coalesce a burst of changes
                    requests.append(self._requests.get_nowait())
                if all(r.reason == "outputs" for r in requests):
                    self._outputs.refresh()
                    outcome = SwapOutcome(True, "outputs refreshed")
                else:
                    outcome = self._reconcile(force=any(r.force for r in requests))
            except Exception as err:  # noqa: BLE001 - reported; the node keeps serving
                outcome = SwapOutcome(False, f"{type(err).__name__}: {err}")
                self._state.engine = (f"failed: {err}" if self.engine is None
                                      else self._state.engine)
                self._log.error(f"task change failed: {outcome.message}")
            for r in requests:
                if r.future is not None:
                    r.future.set_result(outcome)
        while not self._requests.empty():
            r = self._requests.get_nowait()
            if r.future is not None:
                r.future.set_result(SwapOutcome(False, "node is shutting down"))

    def _desired(self, cfg: NodeParams, bundles: dict[str, Any]) -> tuple[list[str], list[str],
                                                                          dict[str, str]]:
        """(model tasks, bundle tasks, problems by task) wanted by the ``tasks`` parameter."""
        base_names = self._base_names
        problems: dict[str, str] = {}
        if cfg.tasks == (ALL_TASKS,):
            for name in bundles:
                if name in base_names:
                    problems[name] = (f"bundle {bundles[name].path.name} has the name of a task "
                                      "of the model; rename it")
            return list(base_names), [n for n in bundles if n not in base_names], problems
        base = [t for t in cfg.tasks if t in base_names]
        wanted = [t for t in cfg.tasks if t not in base_names and t in bundles]
        for t in cfg.tasks:
            if t not in base_names and t not in bundles:
                problems[t] = (f"listed in tasks but adapters_dir {cfg.adapters_dir!r} has no "
                               f"{t}.tadtask or {t}.safetensors")
        return base, wanted, problems

    def _build_engine(self, base: list[str]) -> Any:
        from perception.runtime.engine import PerceptionEngine
        from perception.training.model_file import load_model

        cfg = self._params()
        # A rebuild needs a fresh model: an engine merges LoRA and removes tasks in its model.
        model, self._first_model = self._first_model or load_model(self._model_path), None
        return PerceptionEngine(
            model, cfg.backend, input_size=cfg.network_size,
            tasks=base, mounting=self._mounting, threads=cfg.threads, precision=cfg.precision,
            cache_dir=Path(cfg.cache_dir).expanduser() if cfg.cache_dir else None)

    def _reconcile(self, *, force: bool, initial: bool = False) -> SwapOutcome:
        """Make the engine run what ``tasks`` and ``adapters_dir`` say; report what happened."""
        from perception.training.bundle import read_bundle

        cfg = self._params()
        bundles = scan_bundles(cfg.adapters_dir)
        self._watcher.adopt(bundles)
        if force:
            self._failed.clear()
        base, wanted, problems = self._desired(cfg, bundles)
        lines: list[str] = []
        engine, loaded = self.engine, dict(self._loaded)
        rebuild = engine is None or any(t not in engine.tasks for t in base)
        if rebuild:
            t0 = time.perf_counter()
            self._state.engine = "starting" if engine is None else self._state.engine
            engine, loaded = self._build_engine(base), {}
            self._state.backend = engine.backend.describe()
            lines.append(f"{'built' if initial else 'rebuilt'} the engine with {base} "
                         f"({(time.perf_counter() - t0) * 1e3:.0f} ms)")
        for name in reversed(engine.tasks):  # fusion tasks were added last: they go first
            if name not in base and name not in wanted:
                try:
                    report = engine.remove_task(name)
                except ConfigError as err:  # fused by a task that stays
                    problems[name] = f"cannot remove: {err}"
                    lines.append(f"remove {name} FAILED: {err}")
                    continue
                loaded.pop(name, None)
                lines.append(f"removed {name} ({report.latency_ms:.0f} ms)")
        todo = []
        for name in wanted:
            entry = bundles[name]
            op = "replace" if name in engine.tasks else "add"
            if op == "replace" and loaded.get(name) == entry.signature:
                continue
            failed = self._failed.get(name)
            if failed is not None and failed[0] == entry.signature:
                problems[name] = failed[1]  # unchanged since it failed: not retried until reload
                continue
            try:
                bundle = read_bundle(entry.path)
                if bundle.name != name:
                    raise ConfigError(f"{entry.path.name} holds task {bundle.name!r}; name the "
                                      f"file {bundle.name}{entry.path.suffix}")
            except PerceptionError as err:
                self._fail(name, entry.signature, str(err), problems, lines, op)
                continue
            todo.append((len(bundle.manifest.sources), op, name, entry, bundle))
        for _, op, name, entry, bundle in sorted(todo, key=lambda t: t[0]):
            if op == "add" and not rebuild:
                self._outputs.ensure(name, bundle.manifest.task)  # the topic exists first
            report = engine.add_task(bundle) if op == "add" else engine.replace_task(bundle)
            if report.ok:
                loaded[name] = entry.signature
                self._failed.pop(name, None)
                lines.append(f"{op} {name} ok ({report.latency_ms:.0f} ms)")
                self._state.last_swap = f"{op} {name}: ok in {report.latency_ms:.0f} ms"
                if not rebuild:
                    self._outputs.ensure(name, bundle.manifest.task)
                    if report.first_results:
                        self._outputs.first(report.first_results)
            else:
                if op == "add" and not rebuild:
                    self._outputs.drop(name)
                self._fail(name, entry.signature, report.message, problems, lines, op)
        if rebuild:
            if self._stop:
                return SwapOutcome(False, "node is shutting down")
            for name in engine.tasks:
                self._outputs.ensure(name, engine.model.tasks[name].cfg)
            self.engine = engine  # the worker takes it for the next frame
            self._state.engine = "ready"
        self._loaded = loaded
        for name in self._outputs.names():
            if name not in engine.tasks:
                self._outputs.drop(name)
        self._outputs.refresh()
        self._state.active_tasks = list(engine.tasks)
        self._state.bundle_errors = problems
        for line in lines:  # (rclpy refuses two severities from one call site)
            if "FAILED" in line:
                self._log.error(line)
            else:
                self._log.info(line)
        for name, why in problems.items():
            if not any(line.startswith(("add " + name, "replace " + name)) for line in lines):
                self._log_error(f"task:{name}", f"task {name!r} is not running: {why}")
        summary = "; ".join(lines) or "no change"
        active = f"active tasks: {', '.join(engine.tasks)}"
        if problems:
            errors = "; ".join(f"{k}: {v}" for k, v in sorted(problems.items()))
            return SwapOutcome(False, f"{summary}. {active}. ERRORS: {errors}")
        return SwapOutcome(True, f"{summary}. {active}")

    def _fail(self, name: str, sig: Any, why: str, problems: dict[str, str], lines: list[str],
              op: str) -> None:
        self._failed[name] = (sig, why)
        problems[name] = why
        lines.append(f"{op} {name} FAILED: {why}")
        self._state.last_swap = f"{op} {name}: FAILED: {why}"
