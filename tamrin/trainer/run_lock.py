"""RunLock: a run owns its output_dir for its whole life (an OS file lock, so a killed run leaves none).

Two runs in one output_dir both passed the fresh-run check, then one died in rotation and the CSV
lost rows when the other rewrote it. The lock is `fcntl.flock` on `{output_dir}/.tamrin.lock`: the
kernel drops it when the process ends, however it ends, so there is no stale lock to clean up.
Readers (`tamrin logs`, `tamrin evaluate`) take no lock and read while a run writes.
"""

from __future__ import annotations

import datetime
import fcntl
import os
from pathlib import Path
from typing import IO

from tamrin.configs import ConfigError

__all__ = ["LOCK_NAME", "RunLock"]

LOCK_NAME = ".tamrin.lock"


class RunLock:
    """An exclusive lock on a run's output_dir, held from `acquire` to `release`."""

    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / LOCK_NAME
        self._handle: IO[str] | None = None
        self._created_dir = False

    def acquire(self) -> None:
        """Take the lock, or refuse the run.

        Raises:
            ConfigError: another live process holds it (the message names its pid and start time).
        """
        self._created_dir = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the run's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"{self.path.parent} is in use by another run ({holder}). Two runs in one output_dir would "
                "overwrite each other's checkpoints and logs: wait for it to end, or pick another `output_dir`."
            ) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        handle.write(f"pid {os.getpid()}, started {started}\n")
        handle.flush()
        self._handle = handle

    def release(self, *, refused: bool = False) -> None:
        """Let the lock go (also when the process ends without calling this).

        Args:
            refused: the run stopped before writing anything (a failed check): an output_dir that
                this lock created, and that holds nothing else, is removed again.
        """
        if self._handle is None:
            return
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
        if refused and self._created_dir and [p.name for p in self.path.parent.iterdir()] == [LOCK_NAME]:
            self.path.unlink()
            self.path.parent.rmdir()
