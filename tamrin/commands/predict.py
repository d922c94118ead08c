"""`tamrin predict MODEL INPUT... [--revision R] [--json]`: print a saved model's predictions for raw inputs.

MODEL is a model or checkpoint directory (model_config.yaml + model.safetensors), a run's output_dir
(its final `model/` is used), or a Hub repo id ("user/repo", fetched into the huggingface_hub cache;
`--revision` picks a branch, tag or commit). An existing local path always wins over a repo id. An
INPUT is whatever the model's `preprocess` reads: an image file for image models (a plate image gives
its text), a string for text models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tamrin import hub
from tamrin.models import Model
from tamrin.recipes import resolve_model_dir

__all__ = ["register", "load_model"]

BATCH_SIZE = 32


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("predict", help="print a saved model's predictions for raw inputs")
    parser.add_argument("model_dir", help="a model or checkpoint directory, a run's output_dir, or a Hub repo id")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or texts, as the model reads them")
    parser.add_argument("--revision", default=None, help="the Hub revision (branch, tag or commit) of a repo id")
    parser.add_argument("--json", action="store_true", help="print one JSON object per input")
    parser.set_defaults(handler=run)


def load_model(source: str, revision: str | None = None) -> Model:
    """The model a command names: a local model/run directory, else a Hub repo id at `revision`.

    Raises:
        FileNotFoundError: `source` is neither a directory holding a model nor a Hub repo id, or
            `revision` was given for a local directory.
        HubError: the repo, revision or file is not on the Hub (the message says which).
    """
    if hub.is_repo_id(source):
        return Model.load(source, revision=revision)
    if revision is not None:
        raise FileNotFoundError(f"`--revision {revision}` is for a Hub repo id, but {source!r} is a local path.")
    return Model.load(resolve_model_dir(Path(source)))


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model_dir, args.revision)
    for start in range(0, len(args.inputs), BATCH_SIZE):
        chunk = args.inputs[start : start + BATCH_SIZE]
        for source, prediction in zip(chunk, model.predict(chunk)):
            if args.json:
                print(json.dumps({"input": source, "prediction": prediction}, ensure_ascii=False))
            else:
                print(f"{source}\t{prediction}")
    return 0
