"""`tamrin predict DIR INPUT... [--json]`: print a saved model's predictions for raw inputs.

DIR is a model or checkpoint directory (model_config.yaml + model.safetensors), or a run's
output_dir (its final `model/` is used). An INPUT is whatever the model's `preprocess` reads: an
image file for image models (a plate image gives its text), a string for text models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tamrin.models import Model
from tamrin.recipes import resolve_model_dir

__all__ = ["register"]

BATCH_SIZE = 32


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("predict", help="print a saved model's predictions for raw inputs")
    parser.add_argument("model_dir", help="a model or checkpoint directory, or a run's output_dir")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or texts, as the model reads them")
    parser.add_argument("--json", action="store_true", help="print one JSON object per input")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    model = Model.load(resolve_model_dir(Path(args.model_dir)))
    for start in range(0, len(args.inputs), BATCH_SIZE):
        chunk = args.inputs[start : start + BATCH_SIZE]
        for source, prediction in zip(chunk, model.predict(chunk)):
            if args.json:
                print(json.dumps({"input": source, "prediction": prediction}, ensure_ascii=False))
            else:
                print(f"{source}\t{prediction}")
    return 0
