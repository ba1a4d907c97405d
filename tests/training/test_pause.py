"""The pause-on-signal handler itself (the end-to-end pause of a real ``tadp train`` process is in
test_trainer.py): the first signal is recorded, not fatal; a second Ctrl-C aborts; handlers are
put back afterwards."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from perception.training.pause import PauseOnSignal


def test_first_signal_pauses_second_ctrl_c_aborts(capsys: pytest.CaptureFixture[str]) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with PauseOnSignal() as pause:
        os.kill(os.getpid(), signal.SIGTERM)
        assert (pause.signum, pause.name) == (signal.SIGTERM, "SIGTERM")
        os.kill(os.getpid(), signal.SIGTERM)  # a repeated SIGTERM is still a pause
        assert pause.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert capsys.readouterr().err.count("SIGTERM: pausing after this step") == 1
    assert {s: signal.getsignal(s) for s in before} == before


def test_outside_the_main_thread_it_changes_nothing() -> None:
    seen: list[object] = []

    def body() -> None:
        with PauseOnSignal() as pause:
            seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(pause.signum)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [signal.getsignal(signal.SIGTERM), None]
