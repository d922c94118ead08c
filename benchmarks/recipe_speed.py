"""Benchmark: the training speed of packaged recipes in two checkouts of tamrin (before / after a change).

Run ``python benchmarks/recipe_speed.py --before PATH`` (``PATH``: another checkout, e.g. from
``git worktree add`` or ``git archive``; ``--after`` defaults to this one). Each run is a fresh
subprocess that imports tamrin from one checkout, builds the recipe's Trainer on a small slice of
its data, and trains ``--steps`` steps with no log, evaluation or save in between (only those at
the end of the run). It reports the loop's wall and CPU time per step (first ``on_step_begin`` to
last ``on_step_end``) and a hash of the trained weights. Runs alternate between the checkouts, the
order flipping every round, after one warm-up pair that is not counted; the table gives medians and
the ratio after / before (below 1: faster), and whether the two checkouts trained the same weights
bit for bit. One torch thread per run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def child(checkout: str, recipe: str, steps: int) -> None:
    """Train `steps` steps of `recipe` with the tamrin of `checkout`; print one JSON line."""
    sys.path.insert(0, checkout)
    import torch

    from tamrin.recipes import build_trainer, load_recipe
    from tamrin.trainer.callbacks import Callback

    torch.set_num_threads(1)

    class Clock(Callback):
        def __init__(self) -> None:
            self.begin: tuple[float, float] | None = None
            self.end = (0.0, 0.0)

        def on_step_begin(self, trainer: object) -> None:
            if self.begin is None:
                self.begin = (time.perf_counter(), time.process_time())

        def on_step_end(self, trainer: object) -> None:
            self.end = (time.perf_counter(), time.process_time())

    with tempfile.TemporaryDirectory() as output_dir:
        batch_size = int(load_recipe(recipe).trainer.batch_size)
        overrides = [
            f"trainer.output_dir={output_dir}", f"dataset.num_samples={steps * batch_size}",
            "dataset.eval_num_samples=64", "trainer.num_epochs=1", "trainer.do_evaluate=false",
            f"trainer.log_steps={steps}", "trainer.progress=none",
        ]  # fmt: skip
        trainer = build_trainer(load_recipe(recipe, overrides))
        clock = Clock()
        trainer.add_callback(clock)
        trainer.train()
        digest = hashlib.sha256()
        for name, tensor in sorted(trainer.unwrapped_model.state_dict().items()):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    assert clock.begin is not None
    counted = trainer.state.global_step - 1  # first begin to last end covers every step but the wait before the first
    wall, cpu = clock.end[0] - clock.begin[0], clock.end[1] - clock.begin[1]
    print(json.dumps({"wall": wall / counted, "cpu": cpu / counted, "weights": digest.hexdigest()[:16]}))


def run(checkout: Path, recipe: str, steps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout), OMP_NUM_THREADS="1")
    command = [sys.executable, str(HERE), "--child", str(checkout), "--recipes", recipe, "--steps", str(steps)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="the checkout to compare against")
    parser.add_argument("--after", type=Path, default=HERE.parents[1])
    parser.add_argument("--recipes", default="default,text_classification")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.recipes, args.steps)
        return
    if args.before is None:
        parser.error("--before PATH is required")
    print(
        "| recipe | before wall / step | after wall / step | wall ratio | CPU ratio | paired CPU ratio | same weights |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for recipe in args.recipes.split(","):
        results: dict[str, list[dict]] = {"before": [], "after": []}
        for round_index in range(args.rounds + 1):
            order = ["before", "after"] if round_index % 2 == 0 else ["after", "before"]
            for side in order:
                measured = run(getattr(args, side), recipe, args.steps)
                if round_index:  # round 0 warms the caches up
                    results[side].append(measured)
        before, after = results["before"], results["after"]

        def median(side: list[dict], key: str) -> float:
            return statistics.median(item[key] for item in side)

        paired = statistics.median(a["cpu"] / b["cpu"] for a, b in zip(after, before))
        weights = {item["weights"] for item in before + after}
        same = "yes" if len(weights) == 1 else f"no: {sorted(weights)}"
        wall_ratio = median(after, "wall") / median(before, "wall")
        cpu_ratio = median(after, "cpu") / median(before, "cpu")
        print(
            f"| {recipe} | {median(before, 'wall') * 1e3:.1f} ms | {median(after, 'wall') * 1e3:.1f} ms | "
            f"{wall_ratio:.3f} | {cpu_ratio:.3f} | {paired:.3f} | {same} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
