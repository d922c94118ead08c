"""The one table of what a checkpoint holds: each file, how it is saved, how it is loaded.

`STATE_FILES` is read in order by `Checkpointer.save` and `Checkpointer.load`, so save and load
match by construction, and `trainer.save`, step checkpoints, `push_to_hub` (which files only a
resume needs) and `tamrin verify-resume` (which files must be bitwise equal) all take their file
lists from it. To add a piece of state, add one row here: a save function, a load function, and
whether only a resume needs it.

Layout of a checkpoint (the final `trainer.save(path)` has the same shape)::

    model.safetensors  model_config.yaml  (the model's preprocessor files, or config.json)
    (the Trainer's own preprocessor files, e.g. a transformers tokenizer)
    train/trainer_config.yaml  trainer_state.yaml  dataset_config.yaml
    train/optimizer.pt  lr_scheduler.pt  scaler.pt  callbacks.pt  gradients.pt  rng_state*.pt
    train/stream_state*.pt     (a streaming run: each process's place in its stream)
    logs/training_logs.csv     (trainer.save only; step checkpoints leave the logs in logs_dir)

With strategy="fsdp" the model, optimizer and gradient state are in `train/sharded/` instead (DCP:
`.metadata` and one `__{rank}_0.distcp` per process, written by every process); model.safetensors
is the full model gathered to the main process, written by `trainer.save(path)` (and so the final
model and the Hub) but not by step checkpoints, and optimizer.pt / gradients.pt are not written.
    manifest.yaml              (written last: size and sha256 of every file above)
"""

from __future__ import annotations

import dataclasses
import fnmatch
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from tamrin.trainer.checkpoint.files import TRAIN_DIR
from tamrin.trainer.checkpoint.resume_rules import check_loaded_state, restore_process_rng
from tamrin.trainer.checkpoint.store import CheckpointStore
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.logs.logger import CSV_FILENAME
from tamrin.trainer.modeling import load_model_weights, save_model_description
from tamrin.trainer.sharding import SHARDED_DIR, load_sharded, writes_sharded_checkpoints
from tamrin.trainer.state import TrainerState

__all__ = [
    "LOGS_DIR",
    "STATE_FILES",
    "TRAIN_DIR",
    "Checkpointable",
    "SaveContext",
    "StateFile",
    "is_resume_only",
    "gradients_file",
    "local_gradients",
    "rng_file",
    "stream_file",
]

LOGS_DIR = "logs"


class Checkpointable(Protocol):
    """What the table reads from and restores into (the Trainer satisfies it)."""

    config: TrainerConfig
    state: TrainerState
    accelerator: Any
    optimizer: Any
    lr_scheduler: Any
    callbacks: Any
    loss_tracker: Any
    train_dataset: Any
    preprocessor: Any
    logs_dir: Path

    @property
    def unwrapped_model(self) -> torch.nn.Module: ...


@dataclasses.dataclass
class SaveContext:
    """What a save function needs besides the trainer: the store, every process's RNG, the flags."""

    store: CheckpointStore
    rng_states: list[dict[str, Any]]
    include_logs: bool
    write_model: bool = True  # False: a sharded run's step checkpoint (its weights are in the shards)
    full_model_state: dict[str, Any] | None = None  # the gathered weights of a sharded model (main process)
    gradients: list[dict[str, Any]] | None = None  # every process's gradients (several processes), by rank
    stream_states: list[Any] | None = None  # each process's training-stream state (None: map-style data)


@dataclasses.dataclass(frozen=True)
class StateFile:
    """One row of the table.

    Attributes:
        name: the path inside the checkpoint (a glob for a family of files, e.g. one per process, or
            a folder whose files all belong to the row).
        save: writes the file(s) into the staging directory; may write nothing (no scheduler).
        load: restores from a checkpoint directory; None for files read by people and tools only.
        resume_only: only resuming needs it (left out by `push_to_hub(push_optimizer=False)`).
        compared: `tamrin verify-resume` requires it bitwise equal between a straight and a resumed run.
        every_process: every process saves it (a collective write, e.g. DCP shards), before the rows
            that the main process writes alone; it must come first in the table.
    """

    name: str
    save: Callable[[Checkpointable, Path, SaveContext], None]
    load: Callable[[Checkpointable, Path, CheckpointStore], None] | None
    resume_only: bool
    compared: bool = False
    every_process: bool = False


def rng_file(rank: int, world_size: int) -> str:
    """The RNG file of process `rank` in a checkpoint of `world_size` processes."""
    return "rng_state.pt" if world_size == 1 else f"rng_state_{rank}.pt"


# -- sharded state (strategy="fsdp") -------------------------------------------------------------
def _save_sharded(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    if writes_sharded_checkpoints(trainer.config):
        context.store.save_sharded(trainer.unwrapped_model, trainer.optimizer, staging / TRAIN_DIR / SHARDED_DIR)


def _load_sharded(trainer: Checkpointable, directory: Path, store: CheckpointStore) -> None:
    if writes_sharded_checkpoints(trainer.config):
        load_sharded(trainer.unwrapped_model, trainer.optimizer, directory / TRAIN_DIR / SHARDED_DIR)


def _unless_sharded(function: Callable[..., None]) -> Callable[..., None]:
    """A row whose state a sharded run keeps in `train/sharded/` instead: it does nothing there."""

    def row(trainer: Checkpointable, *args: Any) -> None:
        if not writes_sharded_checkpoints(trainer.config):
            function(trainer, *args)

    return row


# -- the model and configs ------------------------------------------------------------------------
def _save_model(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    if not context.write_model:  # the weights are in the shards; `tamrin export` writes them out
        save_model_description(trainer.unwrapped_model, staging)
    elif context.full_model_state is not None:
        context.store.save_model_state(trainer.unwrapped_model, context.full_model_state, staging)
    else:
        context.store.save_weights(trainer.unwrapped_model, staging)


@_unless_sharded
def _load_model(trainer: Checkpointable, directory: Path, store: CheckpointStore) -> None:
    if (directory / TRAIN_DIR / SHARDED_DIR).is_dir() and not (directory / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{directory} was written with strategy='fsdp': its weights and optimizer state are in "
            f"{TRAIN_DIR}/{SHARDED_DIR}/. Resume it with strategy='fsdp', or write its model out with "
            f"`tamrin export {directory} OUT` and start from that with `init_weights_from`."
        )
    load_model_weights(trainer.unwrapped_model, directory)


def _save_preprocessor(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    """The Trainer's own preprocessor (e.g. a transformers tokenizer), so a saved run reads raw inputs.

    A tamrin Model saves the preprocessor it holds with its weights; this writes one only when the
    Trainer was given another (or the model is not a tamrin Model).
    """
    preprocessor = trainer.preprocessor
    if preprocessor is None or preprocessor is getattr(trainer.unwrapped_model, "preprocessor", None):
        return
    save = getattr(preprocessor, "save", None) or getattr(preprocessor, "save_pretrained", None)
    if callable(save):
        save(str(staging))


def _save_trainer_config(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    trainer.config.save(staging / TRAIN_DIR)


def _save_dataset_config(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    save = getattr(getattr(trainer.train_dataset, "config", None), "save", None)
    if callable(save):  # a tamrin Dataset: its config travels with the run
        save(staging / TRAIN_DIR)


# -- progress and optimization state --------------------------------------------------------------
def _save_state(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    trainer.loss_tracker.fold_into(trainer.state)  # the device-side running loss resumes from the state
    trainer.state.save(staging / TRAIN_DIR / "trainer_state.yaml")


def _load_state(trainer: Checkpointable, directory: Path, store: CheckpointStore) -> None:
    path = directory / TRAIN_DIR / "trainer_state.yaml"
    state = TrainerState.load(path)
    check_loaded_state(state, path)
    trainer.state.load_state_dict(state.state_dict())


def _torch_file(name: str, get: Callable[[Checkpointable], Any]) -> tuple[Callable[..., None], Callable[..., None]]:
    """Save/load functions for `train/<name>` holding `get(trainer).state_dict()`, if `get` gives an object."""

    def save(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
        part = get(trainer)
        if part is not None:
            context.store.save_torch(part.state_dict(), staging / TRAIN_DIR / name)

    def load(trainer: Checkpointable, directory: Path, store: CheckpointStore) -> None:
        part = get(trainer)
        if part is not None:
            part.load_state_dict(store.load_torch(directory / TRAIN_DIR / name))

    return save, load


_save_optimizer, _load_optimizer = _torch_file("optimizer.pt", lambda t: t.optimizer)
_save_scheduler, _load_scheduler = _torch_file("lr_scheduler.pt", lambda t: t.lr_scheduler)
_save_scaler, _load_scaler = _torch_file("scaler.pt", lambda t: getattr(t.accelerator, "scaler", None))
_save_callbacks, _load_callbacks = _torch_file("callbacks.pt", lambda t: t.callbacks)


def gradients_file(rank: int, world_size: int) -> str:
    """The gradients file of process `rank`: `gradients.pt` for one process, `gradients_{rank}.pt` for several."""
    return "gradients.pt" if world_size == 1 else f"gradients_{rank}.pt"


def local_gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """This process's accumulated gradients by parameter name (empty between accumulation windows)."""
    return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def _save_gradients(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    """A save inside an accumulation window keeps the window's gradients, each process's own.

    Under DDP the processes' gradients differ until the window's last backward syncs them, so a
    resume must give every process back its own (one file per process).
    """
    per_process = context.gradients or [local_gradients(trainer.unwrapped_model)]
    for rank, gradients in enumerate(per_process):
        if gradients:
            context.store.save_torch(gradients, staging / TRAIN_DIR / gradients_file(rank, len(per_process)))


def _load_gradients(trainer: Checkpointable, directory: Path, store: CheckpointStore) -> None:
    """This process's gradients: its own file, else `gradients.pt` (a 1-process checkpoint), else none."""
    accelerator = trainer.accelerator
    own = directory / TRAIN_DIR / gradients_file(accelerator.process_index, accelerator.num_processes)
    path = own if own.is_file() else directory / TRAIN_DIR / "gradients.pt"
    gradients = store.load_torch(path) if path.is_file() else {}
    for name, parameter in trainer.unwrapped_model.named_parameters():
        parameter.grad = gradients[name].to(parameter.device) if name in gradients else None


def _save_rng(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    for rank, rng_state in enumerate(context.rng_states):
        context.store.save_torch(rng_state, staging / TRAIN_DIR / rng_file(rank, len(context.rng_states)))


def _load_rng(trainer: Checkpointable, directory: Path, store: CheckpointStore) -> None:
    restore_process_rng(trainer, directory / TRAIN_DIR, store, rng_file)


def stream_file(rank: int, world_size: int) -> str:
    """The training-stream state file of process `rank` in a checkpoint of `world_size` processes."""
    return "stream_state.pt" if world_size == 1 else f"stream_state_{rank}.pt"


def _save_stream(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    """Each process's stream state after its latest trained batch (HF: shard index and offset in it)."""
    states = context.stream_states or []
    if any(state is not None for state in states):
        for rank, state in enumerate(states):
            context.store.save_torch(state, staging / TRAIN_DIR / stream_file(rank, len(states)))


def _load_stream(trainer: Checkpointable, directory: Path, store: CheckpointStore) -> None:
    """Point the training stream at its saved state, to start the resumed epoch there.

    A checkpoint saved at an epoch's end needs none (the next pass starts at the stream's start).
    A stream without state, or a checkpoint without its file, starts the resumed epoch at the
    stream's start: samples of that epoch are trained again, and the warning says so.

    Raises:
        ValueError: the checkpoint's stream states are of another number of processes (each
            process's shard of a stream depends on the world size).
    """
    stream = getattr(trainer, "train_stream", None)
    state = trainer.state
    if stream is None or state.epoch_step == 0:
        return
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    path = directory / TRAIN_DIR / stream_file(rank, world)
    saved = sorted(p.name for p in (directory / TRAIN_DIR).glob("stream_state*.pt"))
    if saved and not path.is_file():
        raise ValueError(
            f"{directory} holds the stream states of {len(saved)} process(es) ({saved}); this run has {world}. "
            "A stream is split by process, so its state resumes only with the same number of processes."
        )
    if saved and callable(getattr(stream.dataset, "load_state_dict", None)):
        stream.resume_state = store.load_torch(path)
        return
    warnings.warn(
        f"The training stream ({type(stream.dataset).__name__}) cannot resume mid-epoch: "
        + ("it has no state_dict()/load_state_dict()" if not saved else "it has no load_state_dict()")
        + f". The resumed run starts epoch {state.epoch} at the stream's start, so the epoch's first "
        f"{state.epoch_step} step(s) are trained again and the run is not equal to an uninterrupted one.",
        stacklevel=4,
    )


def _save_logs(trainer: Checkpointable, staging: Path, context: SaveContext) -> None:
    source = trainer.logs_dir / CSV_FILENAME
    if context.include_logs and source.is_file():
        (staging / LOGS_DIR).mkdir(exist_ok=True)
        context.store.copy_file(source, staging / LOGS_DIR / CSV_FILENAME)


# -- the table: save order = load order ------------------------------------------------------------
STATE_FILES: tuple[StateFile, ...] = (
    StateFile(f"{TRAIN_DIR}/{SHARDED_DIR}", _save_sharded, _load_sharded, resume_only=True, every_process=True),
    StateFile("model.safetensors", _save_model, _load_model, resume_only=False, compared=True),
    StateFile("(preprocessor files)", _save_preprocessor, None, resume_only=False),
    StateFile(f"{TRAIN_DIR}/trainer_config.yaml", _save_trainer_config, None, resume_only=False),
    StateFile(f"{TRAIN_DIR}/dataset_config.yaml", _save_dataset_config, None, resume_only=False),
    StateFile(
        f"{TRAIN_DIR}/optimizer.pt",
        _unless_sharded(_save_optimizer),
        _unless_sharded(_load_optimizer),
        resume_only=True,
        compared=True,
    ),  # fmt: skip
    StateFile(f"{TRAIN_DIR}/lr_scheduler.pt", _save_scheduler, _load_scheduler, resume_only=True, compared=True),
    StateFile(f"{TRAIN_DIR}/scaler.pt", _save_scaler, _load_scaler, resume_only=True),
    StateFile(f"{TRAIN_DIR}/trainer_state.yaml", _save_state, _load_state, resume_only=False),
    StateFile(f"{TRAIN_DIR}/callbacks.pt", _save_callbacks, _load_callbacks, resume_only=True),
    StateFile(
        f"{TRAIN_DIR}/gradients*.pt",
        _unless_sharded(_save_gradients),
        _unless_sharded(_load_gradients),
        resume_only=True,
    ),  # fmt: skip
    StateFile(f"{TRAIN_DIR}/rng_state*.pt", _save_rng, _load_rng, resume_only=True),  # after the state: world size
    StateFile(f"{TRAIN_DIR}/stream_state*.pt", _save_stream, _load_stream, resume_only=True),  # after the state
    StateFile(f"{LOGS_DIR}/{CSV_FILENAME}", _save_logs, None, resume_only=False),
)


def is_resume_only(relative_path: str) -> bool:
    """Whether a file of a checkpoint (a posix path inside it, or a folder of the table) only resuming needs."""
    return any(
        entry.resume_only
        and (fnmatch.fnmatchcase(relative_path, entry.name) or relative_path.startswith(f"{entry.name}/"))
        for entry in STATE_FILES
    )
