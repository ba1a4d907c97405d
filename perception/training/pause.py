"""SIGTERM and Ctrl-C as a clean pause of a training run.

Schedulers, ``timeout``, ``systemctl stop`` and spot-instance preemption send SIGTERM; people
press Ctrl-C. Either way the run should stop at the end of the current step with a checkpoint,
so ``--resume`` loses nothing (before, only the last ``--checkpoint-every`` checkpoint was kept
and the steps after it were trained again). A second Ctrl-C aborts at once.

Handlers can only be installed from the main thread; elsewhere (a notebook's worker thread)
:class:`PauseOnSignal` stays inert and the default behaviour is kept.
"""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["PauseOnSignal", "worker_signals"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PauseOnSignal:
    """Context manager: while active, SIGTERM/SIGINT set :attr:`signum` instead of killing the
    process; the training loop polls it between steps."""

    def __init__(self, announce: bool = True) -> None:
        self.signum: int | None = None
        self._announce = announce
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: abort now
        if self.signum is None and self._announce:
            print(f"{signal.Signals(signum).name}: pausing after this step with a checkpoint "
                  "(Ctrl-C again to abort without one)", file=sys.stderr, flush=True)
        self.signum = self.signum or signum

    def __enter__(self) -> PauseOnSignal:
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def worker_signals() -> None:
    """For data-loader workers, which fork with the pause handlers. Ctrl-C (and ``kill`` of a
    process group, as systemd does) reaches every process of the group; a worker that died of
    it would make torch's SIGCHLD handler raise in the main process before it can checkpoint.
    So workers ignore both: the main process stops them when it leaves the loader, and they
    exit on their own if it dies (torch's worker watchdog)."""
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
