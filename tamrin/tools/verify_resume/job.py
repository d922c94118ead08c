"""One process of `tamrin verify-resume`: train a recipe and record every step exactly.

    python -m tamrin.tools.verify_resume.job SPEC.json

SPEC.json (written by `tamrin.tools.verify_resume`) names the recipe, its overrides, the modules to import,
the steps, the step to stop at with a checkpoint, and whether to save or load the initial weights
(in `run_dir/../initial`). The run writes into `run_dir`: `output/` (its checkpoints and logs),
`trace.jsonl` (one JSON record per step: the loss as float.hex, and a sha256 of every weight and
buffer, every optimizer-state value and the random generators' states) and `final/` (a `Trainer.save`
at the end). Recording costs a host sync and a copy of the weights per step: a verification run.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tamrin.trainer.callbacks import Callback

__all__ = ["TRACE", "FINAL", "INITIAL", "fingerprint", "flatten", "name_optimizer_state", "import_all", "main"]

TRACE = "trace.jsonl"
FINAL = "final"
INITIAL = "initial"


def fingerprint(value: Any) -> str:
    """An exact, comparable form of a value: a sha256 prefix (with dtype and shape) for a tensor."""
    import torch

    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return f"sha256:{digest.hexdigest()[:24]} ({str(tensor.dtype).removeprefix('torch.')}{list(tensor.shape)})"
    return value.hex() if isinstance(value, float) else repr(value)


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            yield from flatten(value, f"{prefix}[{index}]")
    else:
        yield prefix, obj


def name_optimizer_state(state: Any, parameter_names: list[str]) -> Any:
    """An optimizer state dict with `state[3]` keyed by its parameter's name; anything else unchanged."""
    if not (isinstance(state, Mapping) and "state" in state and "param_groups" in state):
        return state
    named = {
        f"state[{parameter_names[i] if isinstance(i, int) and i < len(parameter_names) else i}]": values
        for i, values in state["state"].items()
    }
    return {**named, "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in state["param_groups"]]}


def weight_fingerprints(model: Any) -> dict[str, str]:
    return {name: fingerprint(tensor) for name, tensor in model.state_dict().items()}


def rng_fingerprints() -> dict[str, str]:
    import numpy as np
    import torch

    states = {
        "torch": fingerprint(torch.get_rng_state()),
        # the MT19937 key (the same array as the legacy tuple's [1], which numpy's stubs type as a dict)
        "numpy": fingerprint(torch.from_numpy(np.random.get_state(legacy=False)["state"]["key"].astype(np.int64))),
        "python": hashlib.sha256(repr(random.getstate()).encode()).hexdigest()[:24],
    }
    if torch.cuda.is_available():
        states.update({f"cuda:{i}": fingerprint(s) for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


# -- one verification process (python -m tamrin.tools.verify_resume.job SPEC.json) ---------------
class _Tracer(Callback):
    """Records the loss, weights, optimizer state and random states after every step (a host sync
    per step: this is a verification run), and ends the run with a checkpoint at `stop_at`."""

    def __init__(self, path: Path, stop_at: int | None) -> None:
        self.path = path
        self.stop_at = stop_at
        self.loss: float | None = None
        self.parameter_names: list[str] = []

    def attach(self, trainer: Any) -> None:
        """Join `trainer`'s callbacks (last); on_step_end receives each step's loss."""
        trainer.add_callback(self)

    def on_train_begin(self, trainer: Any) -> None:
        by_id = {id(p): name for name, p in trainer.unwrapped_model.named_parameters()}
        groups = trainer.optimizer.param_groups
        self.parameter_names = [by_id.get(id(p), "?") for group in groups for p in group["params"]]
        self.write({"event": "start", "parameter_names": self.parameter_names})
        if trainer.state.global_step > 0:  # what the checkpoint restored
            self.write({"event": "loaded", "step": trainer.state.global_step, **self._snapshot(trainer)})

    def on_step_end(self, trainer: Any, loss: Any = None) -> None:
        self.loss = float(loss) if loss is not None else None  # a host sync each step: this is a verification run
        loss = self.loss.hex() if self.loss is not None else "none"
        self.write({"step": trainer.state.global_step, "loss": loss, **self._snapshot(trainer)})
        if trainer.state.global_step == self.stop_at:
            trainer.control.should_save = True
            trainer.control.should_stop = True

    def _snapshot(self, trainer: Any) -> dict[str, dict[str, str]]:
        optimizer_state = name_optimizer_state(trainer.optimizer.state_dict(), self.parameter_names)
        return {
            "weights": weight_fingerprints(trainer.unwrapped_model),
            "optimizer": {name: fingerprint(value) for name, value in flatten(optimizer_state)},
            "rng": rng_fingerprints(),
        }

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def main(spec_path: str) -> int:
    """Run the process SPEC.json describes; returns the exit code."""
    from tamrin.recipes import build_trainer, load_recipe
    from tamrin.trainer.modeling import load_model_weights, save_model_weights

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    import_all(spec["imports"])
    run_dir = Path(spec["run_dir"])
    recipe = load_recipe(spec["recipe"], spec["overrides"])
    recipe.trainer.output_dir = str(run_dir / "output")
    recipe.trainer.max_steps = spec["steps"]
    recipe.trainer.resume_from_checkpoint = True
    recipe.trainer.progress = "none"
    trainer = build_trainer(recipe)
    tracer = _Tracer(run_dir / TRACE, spec["stop_at"])
    tracer.attach(trainer)
    tracer.write({"event": "built", "weights": weight_fingerprints(trainer.unwrapped_model)})
    initial = run_dir.parent / INITIAL
    if spec.get("initial") == "save":
        save_model_weights(trainer.unwrapped_model, initial)
    elif spec.get("initial") == "load":  # in place, before any step: the optimizer holds the same tensors
        load_model_weights(trainer.unwrapped_model, initial)
    trainer.train()
    if spec["final"]:
        trainer.save(run_dir / FINAL)
    return 0


def import_all(modules: Sequence[str]) -> None:
    """Import the user's modules (they register models, datasets and callbacks) before anything is built.

    The working directory is searched first, as `python -m` does (the `tamrin` script alone would not).

    Raises:
        ConfigError: a module cannot be found.
    """
    from tamrin.configs import ConfigError

    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            raise ConfigError(
                f"Cannot import `{module}` (--import): {err}. Run from the folder that holds it, or add that "
                "folder to PYTHONPATH."
            ) from err


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
