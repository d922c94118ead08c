"""Stop at a step boundary on SIGTERM or Ctrl-C, with a checkpoint there, and say how to resume.

SIGTERM is what Kubernetes, SLURM and spot instances send before they kill a job. While `train()`
runs, SIGTERM and SIGINT set `control.should_save` and `should_stop`: the current step finishes,
its checkpoint is written, and `train()` raises `RunInterrupted`, which the CLI turns into one line
and exit status 128 + the signal (143 for SIGTERM, 130 for Ctrl-C). A second Ctrl-C aborts at once
(Python's KeyboardInterrupt). Handlers can only be installed from the main thread; elsewhere the
signals keep their previous meaning.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["RunInterrupted", "StopOnSignal"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(Exception):
    """`train()` stopped on a signal after saving a checkpoint at the step it had reached."""

    def __init__(self, signum: int, step: int, checkpoint: str | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self.step = step
        self.checkpoint = checkpoint
        self.exit_code = 128 + signum
        where = f"the checkpoint {checkpoint}" if checkpoint else "no checkpoint (none could be written)"
        super().__init__(
            f"Stopped by {self.signal_name} at step {step}, after saving {where}. Resume the run exactly with "
            "`resume_from_checkpoint=True` (tamrin train ... trainer.resume_from_checkpoint=true)."
        )


class StopOnSignal:
    """Turns SIGTERM / SIGINT into a stop request on `control` while installed."""

    def __init__(self, control: Any) -> None:
        self.control = control
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: abort now, without the checkpoint
        self.received = signum
        self.control.should_save = True
        self.control.should_stop = True
