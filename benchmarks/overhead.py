"""Benchmark: the per-step overhead of tamrin's Trainer against a plain accelerate loop (tiny MLP).

Run ``python benchmarks/overhead.py``. The same tiny MLP, data, optimizer (AdamW) and batch size
train for one epoch under three loops, interleaved in one process (the order rotates every round,
after one warm-up round that is not counted):

* ``accelerate``: the canonical accelerate loop: ``accelerator.prepare(model, optimizer, loader)``,
  ``accelerator.backward``, a tqdm bar, the loss read from the device every ``log_steps`` steps.
* ``torch``: the same loop without accelerate's data-loader wrapper (a stricter baseline).
* ``tamrin``: ``Trainer.train()`` with ``progress="bar"``, the same ``log_steps``, CSV and
  TensorBoard logs, and the one checkpoint that a run saves at its end.

The model is so small that the framework's own work per step dominates. Two times are reported per
loop: ``loop`` (first step to last step; for tamrin, ``on_train_begin`` to the last
``on_step_end``) and ``total`` (for tamrin the whole ``train()`` call, which adds opening the
logs and saving the final checkpoint). The table gives medians and the ratio of the medians to the
accelerate loop; ``paired`` is the median of the per-round ratios, which cancels slow phases of a
busy machine. One torch thread (``torch.set_num_threads(1)``) for every loop.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

FEATURES, HIDDEN, CLASSES = 32, 64, 4
BATCH = 32
LOG_STEPS = 50
LEARNING_RATE = 1e-3
SEED = 0


class TinyMLP(nn.Module):
    """Two linear layers: a step costs ~100 µs, so the loop around it is what gets measured."""

    def __init__(self, features: int = FEATURES, hidden: int = HIDDEN, classes: int = CLASSES) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(x)}

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(outputs["logits"], batch["labels"])


class DictDataset(Dataset):
    """Rows of equally long tensors, served as dicts (the batch shape every framework here accepts)."""

    def __init__(self, **columns: torch.Tensor) -> None:
        self.columns = columns
        self.length = len(next(iter(columns.values())))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: column[index] for name, column in self.columns.items()}


@dataclass
class Workload:
    """One model + data + optimizer setting, the same under every loop.

    The model's ``forward`` takes ``input_keys`` of the batch and returns a dict with ``logits``;
    its ``compute_loss(outputs, batch)`` returns the loss (tamrin's model contract).
    """

    name: str
    make_model: Callable[[], nn.Module]
    dataset: Dataset
    batch_size: int
    learning_rate: float
    input_keys: tuple[str, ...]

    def model_and_optimizer(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(SEED)
        model = self.make_model()
        return model, torch.optim.AdamW(model.parameters(), lr=self.learning_rate)

    @property
    def steps(self) -> int:
        return -(-len(self.dataset) // self.batch_size)


def mlp_workload(steps: int) -> Workload:
    """`steps` batches of 32 random features, labelled by a fixed linear rule (learnable)."""
    generator = torch.Generator().manual_seed(1234)
    x = torch.randn(steps * BATCH, FEATURES, generator=generator)
    w = torch.randn(FEATURES, CLASSES, generator=generator)
    dataset = DictDataset(x=x, labels=(x @ w).argmax(dim=1))
    return Workload("tiny-mlp", TinyMLP, dataset, BATCH, LEARNING_RATE, ("x",))


def run_manual_loop(workload: Workload, *, use_accelerate: bool) -> dict[str, float]:
    """The hand-written loop; returns {"loop": s, "total": s, "loss": last logged loss}."""
    model, optimizer = workload.model_and_optimizer()
    generator = torch.Generator().manual_seed(SEED)
    loader = DataLoader(workload.dataset, batch_size=workload.batch_size, shuffle=True, generator=generator)
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward
    if use_accelerate:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=True)
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
        backward = accelerator.backward
    began, began_cpu = time.perf_counter(), time.process_time()
    model.train()
    running, last_loss, steps = torch.zeros(()), float("nan"), len(loader)
    bar = tqdm(total=steps, desc="Epoch 1/1")
    for step, batch in enumerate(loader, start=1):
        outputs = model(**{key: batch[key] for key in workload.input_keys})
        loss = model.compute_loss(outputs, batch)
        backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.detach()
        if step % LOG_STEPS == 0 or step == steps:
            last_loss = running.item() / (step - (step - 1) // LOG_STEPS * LOG_STEPS)  # a host sync, at log steps only
            bar.set_postfix_str(f"train.loss={last_loss:.4g}", refresh=True)
            running.zero_()
        bar.update()
    bar.close()
    elapsed, elapsed_cpu = time.perf_counter() - began, time.process_time() - began_cpu
    return {
        "loop": elapsed,
        "total": elapsed,
        "loop_cpu": elapsed_cpu,
        "total_cpu": elapsed_cpu,
        "loss": last_loss,
        "steps_run": steps,
    }


def run_tamrin(workload: Workload, output_dir: str) -> dict[str, float]:
    """`Trainer.train()` on the same model, data and optimizer; times `train()` and its loop."""
    from tamrin import Trainer, TrainerConfig
    from tamrin.trainer.callbacks import Callback

    class LoopTimer(Callback):
        def on_train_begin(self, trainer: Trainer) -> None:
            self.began, self.began_cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, trainer: Trainer) -> None:
            self.ended, self.ended_cpu = time.perf_counter(), time.process_time()

    model, optimizer = workload.model_and_optimizer()
    config = TrainerConfig(
        output_dir=output_dir,
        device="cpu",
        num_epochs=1,
        batch_size=workload.batch_size,
        log_steps=LOG_STEPS,
        do_evaluate=False,
        progress="bar",
        seed=SEED,
    )
    timer = LoopTimer()
    trainer = Trainer(
        model=model, config=config, train_dataset=workload.dataset, optimizer=optimizer, callbacks=[timer]
    )
    began, began_cpu = time.perf_counter(), time.process_time()
    logs = trainer.train()
    total, total_cpu = time.perf_counter() - began, time.process_time() - began_cpu
    return {
        "loop": timer.ended - timer.began,
        "total": total,
        "loop_cpu": timer.ended_cpu - timer.began_cpu,
        "total_cpu": total_cpu,
        "loss": logs.get("train.loss", float("nan")),
        "steps_run": trainer.state.global_step,
    }


def quietly(fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Run `fn` with its progress bars and banners sent to a buffer (the same cost for every loop)."""
    sink = io.StringIO()
    with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        return fn()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps (batches of 32) per run (default 3000)")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds, each runs every loop once (>= 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    workload = mlp_workload(args.steps)
    workdir = tempfile.mkdtemp(prefix="tamrin-overhead-")
    runners: dict[str, Callable[[int], dict[str, float]]] = {
        "accelerate": lambda r: run_manual_loop(workload, use_accelerate=True),
        "torch": lambda r: run_manual_loop(workload, use_accelerate=False),
        "tamrin": lambda r: run_tamrin(workload, os.path.join(workdir, f"run{r}")),
    }
    names = list(runners)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    print(
        f"# Step overhead: tiny MLP ({FEATURES}-{HIDDEN}-{CLASSES}), batch {BATCH}, {args.steps} steps, AdamW, "
        f"torch threads {torch.get_num_threads()}, {args.repeats} interleaved rounds after 1 warm-up round",
        flush=True,
    )
    for round_index in range(-1, args.repeats):  # round -1 warms up imports, allocators and caches
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            result = quietly(lambda name=name, r=round_index: runners[name](r))
            if round_index >= 0:
                results[name].append(result)
        if round_index >= 0:
            shown = ", ".join(f"{n} {results[n][-1]['loop'] * 1e3:.0f} ms" for n in names)
            print(f"round {round_index + 1}: {shown}", file=sys.stderr, flush=True)
    print()
    print("\n".join(ratio_table(results, "accelerate", args.steps)))
    losses = ", ".join(f"{name} {runs[-1]['loss']:.4f}" for name, runs in results.items())
    print(f"\nlast logged train loss (all loops learn the same task): {losses}")
    for key, what in (("loop", "wall time"), ("loop_cpu", "CPU time")):
        ratio = median_of(results["tamrin"], key) / median_of(results["accelerate"], key)
        verdict = "meets" if ratio <= 1.03 else "MISSES"
        print(f"tamrin / accelerate, loop {what} (ratio of medians): {ratio:.3f}x -- {verdict} the <= 1.03x target")
    return 0


def median_of(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def ratio_table(results: dict[str, list[dict[str, float]]], baseline: str, steps: int) -> list[str]:
    """Markdown rows per loop: median loop time (wall and CPU), per step, the ratios of the medians
    to `baseline`, the median of the per-round (paired) wall ratios, and the whole-run ratios."""
    base = results[baseline]
    lines = [
        "| loop | wall / step | CPU / step | wall ratio | CPU ratio | paired wall ratio | total wall ratio "
        "| total CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        if not runs:
            continue
        ratio = {key: median_of(runs, key) / median_of(base, key) for key in ("loop", "loop_cpu", "total", "total_cpu")}
        paired = statistics.median(run["loop"] / ref["loop"] for run, ref in zip(runs, base))
        wall, cpu = median_of(runs, "loop") / steps * 1e6, median_of(runs, "loop_cpu") / steps * 1e6
        lines.append(
            f"| {name} | {wall:.0f} µs | {cpu:.0f} µs "
            f"| {ratio['loop']:.3f} | {ratio['loop_cpu']:.3f} | {paired:.3f} | {ratio['total']:.3f} "
            f"| {ratio['total_cpu']:.3f} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
