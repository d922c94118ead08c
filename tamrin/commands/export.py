"""`tamrin export CHECKPOINT OUT`: a sharded checkpoint (strategy="fsdp") -> one model folder.

The folder holds model.safetensors with the full weights and the model's config (and preprocessor),
as `trainer.save` writes them: `Model.load(OUT)`, `tamrin predict OUT` and `tamrin evaluate OUT` read
it in one process. Runs in one process, whatever number of processes wrote the checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tamrin.trainer.checkpoint.export import export_checkpoint

__all__ = ["register"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("export", help="write a sharded (FSDP) checkpoint's full model into a folder")
    parser.add_argument("checkpoint", help="a checkpoint directory of a strategy='fsdp' run")
    parser.add_argument("output", help="the model folder to write (model.safetensors and its config)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    output = export_checkpoint(Path(args.checkpoint), Path(args.output))
    print(f"Exported the full model of {args.checkpoint} to {output}.")
    return 0
