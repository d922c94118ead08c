"""Checkpoints: what they hold (state_files.py), how they appear atomically (files.py), where every
byte goes (store.py), and the part a Trainer holds to save and restore them (checkpointer.py)."""

from tamrin.trainer.checkpoint.checkpointer import Checkpointer
from tamrin.trainer.checkpoint.files import CheckpointWriteError
from tamrin.trainer.checkpoint.state_files import STATE_FILES, StateFile
from tamrin.trainer.checkpoint.store import CheckpointStore

__all__ = ["STATE_FILES", "CheckpointStore", "CheckpointWriteError", "Checkpointer", "StateFile"]
