"""Checkpointer: the part of a Trainer that writes, finds, rotates and restores checkpoints.

It holds the accelerator (which process writes, RNG gathering), the run's checkpoints and logs
folders, and a `CheckpointStore` (every file-system operation, replaceable in tests). What goes into
a checkpoint is the table in state_files.py; how a folder appears atomically is files.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tamrin import hub
from tamrin.configs import ConfigError
from tamrin.trainer.checkpoint import files
from tamrin.trainer.checkpoint.publishing import download_pushed_run
from tamrin.trainer.checkpoint.resume_rules import apply_current_optimizer_settings, warn_config_differences
from tamrin.trainer.checkpoint.rng import capture_rng_state
from tamrin.trainer.checkpoint.state_files import (
    STATE_FILES,
    TRAIN_DIR,
    Checkpointable,
    SaveContext,
    local_gradients,
)
from tamrin.trainer.checkpoint.store import CheckpointStore
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.modeling import load_model_weights
from tamrin.trainer.runtime import run_info
from tamrin.trainer.sharding import SHARDED_DIR, gather_full_state, is_sharded, load_sharded, writes_sharded_checkpoints

__all__ = ["ABANDONED_DIR", "Checkpointer"]

ABANDONED_DIR = "abandoned"
"""Where the later checkpoints of a branch left by going back to an older checkpoint are kept."""


class Checkpointer:
    """Saves and restores a trainer's state as the `STATE_FILES` table says.

    Args:
        accelerator: the run's accelerate Accelerator (the main process writes; all gather RNG).
        checkpoints_dir: where step checkpoints go (`{output_dir}/checkpoints`).
        logs_dir: the run's logs folder (cleared with the checkpoints by `overwrite_output_dir`).
        store: the file-system operations (default: the local file system).
    """

    def __init__(self, accelerator: Any, checkpoints_dir: Path, logs_dir: Path, store: CheckpointStore | None = None):
        self.accelerator = accelerator
        self.checkpoints_dir = Path(checkpoints_dir)
        self.logs_dir = Path(logs_dir)
        self.store = store or CheckpointStore()
        self.notes: dict[str, str] = {}  # facts about the run that each manifest records (e.g. how it resumes)

    # -- saving ------------------------------------------------------------------------------------
    def save(
        self, trainer: Checkpointable, path: str | os.PathLike, *, include_logs: bool = True, consolidate: bool = True
    ) -> Path:
        """Write every state file into `path`, atomically (all processes call it; the main one writes).

        A sharded run (strategy="fsdp") first writes every process's DCP shard into the staging folder
        (the table's `every_process` rows); with `consolidate`, the full model is also gathered to the
        main process and written as model.safetensors (step checkpoints skip it: the shards hold it).

        Raises:
            CheckpointWriteError: an OSError while writing (e.g. a full disk); nothing half-written is
                left behind and the previous checkpoint is intact (the message names it).
        """
        path = Path(path)
        context = SaveContext(
            self.store, self._gather_rng_states(), include_logs, stream_states=self._gather_stream_states(trainer)
        )
        sharded = writes_sharded_checkpoints(trainer.config)
        if not sharded and self.accelerator.num_processes > 1:  # each process's half-window (a collective)
            context.gradients = self._gather_gradients(trainer)
        if sharded:
            context.write_model = consolidate
            if consolidate and is_sharded(trainer.unwrapped_model):  # a collective gather, on every process
                context.full_model_state = gather_full_state(trainer.unwrapped_model)
        if not self.accelerator.is_main_process:
            if sharded:  # into the main process's staging folder (a push stages in its own temporary folder)
                self._save_rows(trainer, self._shared_staging(None), context, every_process=True)
            self.accelerator.wait_for_everyone()
            return path
        info = run_info(trainer.config, self.accelerator.num_processes, trainer.state.global_step) | self.notes
        try:
            with files.atomic_directory(path, info, self.store) as staging:
                (staging / TRAIN_DIR).mkdir()
                if sharded:
                    self._shared_staging(staging)
                self._save_rows(trainer, staging, context, every_process=True)
                self._save_rows(trainer, staging, context, every_process=False)
        except Exception as err:  # e.g. a full disk: say what happened, where, and that the last one is intact
            os_error = files.os_error_in(err)
            if os_error is None:
                raise
            raise files.checkpoint_write_error(os_error, path, self.checkpoints_dir) from err
        self.accelerator.wait_for_everyone()
        return path

    def _shared_staging(self, staging: Path | None) -> Path:
        """The main process's staging folder, sent to every process once it exists (a collective call)."""
        if self.accelerator.num_processes == 1:
            return staging or Path()
        from accelerate.utils import broadcast_object_list

        return Path(broadcast_object_list([None if staging is None else str(staging)])[0])

    @staticmethod
    def _save_rows(trainer: Checkpointable, staging: Path, context: SaveContext, *, every_process: bool) -> None:
        """Save the table's rows of one kind, in the table's order."""
        for entry in STATE_FILES:
            if entry.every_process == every_process:
                entry.save(trainer, staging, context)

    def step_checkpoint_path(self, global_step: int) -> Path:
        """Where the checkpoint of `global_step` goes (named by the step, zero-padded)."""
        return self.checkpoints_dir / files.checkpoint_name(global_step)

    def rotate(self, limit: int | None, keep: list[str | None]) -> None:
        """Delete the oldest checkpoints beyond `limit` (never the newest nor those in `keep`)."""
        if self.accelerator.is_main_process:
            files.rotate_checkpoints(self.checkpoints_dir, limit, keep=keep, store=self.store)

    def _gather_rng_states(self) -> list[dict[str, Any]]:
        state = capture_rng_state()
        if self.accelerator.num_processes == 1:
            return [state]
        from accelerate.utils import gather_object

        return gather_object([state])

    def _gather_gradients(self, trainer: Checkpointable) -> list[dict[str, Any]]:
        """Every process's accumulated gradients on the CPU, by rank (empty dicts between windows)."""
        from accelerate.utils import gather_object

        local = {name: grad.detach().cpu() for name, grad in local_gradients(trainer.unwrapped_model).items()}
        return gather_object([local])

    def _gather_stream_states(self, trainer: Checkpointable) -> list[Any] | None:
        """Each process's training-stream state (None without a stream: every process agrees)."""
        stream = getattr(trainer, "train_stream", None)
        if stream is None:
            return None
        state = stream.state()
        if self.accelerator.num_processes == 1:
            return [state]
        from accelerate.utils import gather_object

        return gather_object([state])

    # -- restoring ---------------------------------------------------------------------------------
    def load(self, trainer: Checkpointable, path: str | os.PathLike) -> None:
        """Restore every state file of `path` into `trainer`, in the table's order."""
        path = Path(path)
        saved_config = TrainerConfig.load(path / TRAIN_DIR)
        warn_config_differences(saved_config, trainer.config)
        for entry in STATE_FILES:
            if entry.load is not None:
                entry.load(trainer, path, self.store)
        apply_current_optimizer_settings(trainer, saved_config)

    def load_weights(self, trainer: Checkpointable, path: str | os.PathLike) -> None:
        """Load only the model weights of checkpoint `path` (e.g. the best one, at the end of a run)."""
        path = Path(path)
        if writes_sharded_checkpoints(trainer.config):
            load_sharded(trainer.unwrapped_model, trainer.optimizer, path / TRAIN_DIR / SHARDED_DIR, model_only=True)
        else:
            load_model_weights(trainer.unwrapped_model, path)

    def resume_path(self, request: bool | str | None) -> Path | None:
        """The checkpoint `resume_from_checkpoint` points to (None: start a new run).

        True means the newest complete checkpoint of this run (damaged ones are skipped with a
        warning); a string is a checkpoint directory or a Hub repo id.

        Raises:
            ConfigError: the named checkpoint is empty or damaged. FileNotFoundError: it does not exist.
        """
        if not request:
            return None
        if self.accelerator.is_main_process:
            files.remove_stale_directories(self.checkpoints_dir, self.store)
        self.accelerator.wait_for_everyone()
        if request is True:
            path = files.latest_valid_checkpoint(self.checkpoints_dir)
            if path is None:
                self.accelerator.print(f"No checkpoint in {self.checkpoints_dir}: starting a new run.")
            return path
        path = _checkpoint_source(str(request))
        if path.is_dir() and not any(path.iterdir()):
            raise ConfigError(
                f"Cannot resume from {path}: the directory is empty, not a checkpoint "
                "(pass a checkpoint directory such as {output_dir}/checkpoints/00000008, or true for the latest)."
            )
        problem = files.verify_checkpoint(path)
        if problem:
            raise ConfigError(f"Cannot resume from {path}: {problem}.")
        return path

    def set_aside_later_checkpoints(self, step: int) -> Path | None:
        """Going back to an older checkpoint starts a new branch: move this run's later checkpoints aside.

        They are kept (in `{output_dir}/abandoned/after-{step}-{n}/`), not deleted, and said so; "latest"
        and rotation then see only the live branch, so a crash of the redo cannot resume the abandoned
        run, and rotation cannot delete the redo's own checkpoints.

        Returns:
            The folder they went to (None when there were none). Main process only; others wait.
        """
        later = [info.path for info in files.list_checkpoints(self.checkpoints_dir) if info.global_step > step]
        target = None
        if later and self.accelerator.is_main_process:
            parent = self.checkpoints_dir.parent / ABANDONED_DIR
            number = 1
            while (parent / f"after-{files.checkpoint_name(step)}-{number}").exists():
                number += 1
            target = parent / f"after-{files.checkpoint_name(step)}-{number}"
            target.mkdir(parents=True)
            for path in later:
                self.store.move(path, target / path.name)
            names = ", ".join(path.name for path in later)
            self.accelerator.print(
                f"Resuming from step {step}: the later checkpoint(s) {names} of the run it left are kept in {target}, "
                "out of this run's way (a new branch starts here)."
            )
        self.accelerator.wait_for_everyone()
        return target

    def clear_for_fresh_run(self, overwrite: bool) -> None:
        """A fresh run must not meet another run's checkpoints: a later resume would pick theirs.

        Raises:
            ConfigError: the checkpoints dir holds checkpoints and `overwrite` is False.
        """
        existing = files.list_checkpoints(self.checkpoints_dir)
        if not existing:
            return
        if not overwrite:
            raise ConfigError(
                f"{self.checkpoints_dir} holds checkpoints of an earlier run (latest: step "
                f"{existing[-1].global_step}); a new run there would mix with them. Resume it with "
                "`resume_from_checkpoint=True`, pick another `output_dir`, or set `overwrite_output_dir=True` "
                "to delete them and their logs first."
            )
        if self.accelerator.is_main_process:
            for directory in (self.checkpoints_dir, self.logs_dir, self.checkpoints_dir.parent / ABANDONED_DIR):
                if directory.exists():
                    self.store.clear_directory(directory)
        self.accelerator.wait_for_everyone()

    def latest_checkpoint(self) -> Path | None:
        """The newest checkpoint with a readable manifest (None: none yet)."""
        found = files.list_checkpoints(self.checkpoints_dir)
        return found[-1].path if found else None

    def last_checkpoint_hint(self) -> str:
        """Where a user can go back to after a failure (read from disk only when an error is raised)."""
        latest = files.list_checkpoints(self.checkpoints_dir)
        return f"The last checkpoint is {latest[-1].path}." if latest else "No checkpoint was saved."


def _checkpoint_source(request: str) -> Path:
    """A local checkpoint directory, or a Hub repo id downloaded through the HF cache."""
    path = Path(request)
    if path.is_dir():
        return path
    if not path.exists() and hub.is_repo_id(request):
        return download_pushed_run(request)
    raise FileNotFoundError(f"`resume_from_checkpoint={request!r}`: no such checkpoint directory or Hub repo id.")
