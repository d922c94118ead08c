"""Benchmark: host-device syncs per training step, counted on a CPU as if its device were a GPU.

Run ``python benchmarks/syncs.py`` (``--verbose`` adds every sync's file:line; ``--rows`` picks rows).
Each row runs under ``tamrin.testing.syncs.SyncCounter``, which counts what would make the host wait
for a GPU (``.item()``, ``.tolist()``, ``.cpu()``, boolean reads, data-dependent shapes, blocking
copies); these are CPU emulations of GPU syncs, not GPU measurements.

Every Trainer row trains 12 steps of batch 16 with a log every 4 steps, an evaluation every 6
(64 samples: 4 batches) and a save every 5, so the columns come from different steps: *ordinary*
is the most any step without a log, evaluation or save had; *log* the most of steps 4 and 8; *eval*
step 6 (the whole evaluation); *save* the most of steps 5 and 10. Each of those steps also holds its
own forward, backward and update. A number is the avoidable syncs; ``+N`` adds the inherent ones
(inside PyTorch's CUDA kernels: see ``tamrin.testing.syncs.INHERENT``).

Rows: tamrin's Trainer on an MLP (fp32, bf16, clipping, accumulation 2, nan_policy="skip", AdamW
fused=True); the canonical accelerate loop on the same MLP (``accelerator.prepare`` of model,
optimizer and loaders; the loss read at log steps; ``accelerator.save_state`` at save steps); a
plain fp16 GradScaler loop with AdamW, unfused and fused (accelerate has no GradScaler on a CPU);
and the model of each packaged recipe, trained by the Trainer on a small slice of its data.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from tamrin import Trainer, TrainerConfig  # noqa: E402
from tamrin.testing.sync_steps import StepSyncs, SyncSteps  # noqa: E402
from tamrin.testing.syncs import SyncCounter, format_events  # noqa: E402

STEPS, BATCH, LOG, EVAL, SAVE, EVAL_SAMPLES = 12, 16, 4, 6, 5, 64
COLUMNS = ("ordinary", "log", "eval", "save")


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(x)}

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(outputs["logits"], batch["labels"])


class Blobs(Dataset):
    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, 8, generator=generator)
        self.y = torch.randint(0, 3, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.y[index]}


def step_settings(output_dir: str) -> dict[str, Any]:
    return {
        "output_dir": output_dir, "device": "cpu", "progress": "none", "batch_size": BATCH, "max_steps": STEPS,
        "log_steps": LOG, "eval_steps": EVAL, "save_steps": SAVE, "save_total_limit": None,
    }  # fmt: skip


def count_trainer(build: Callable[[], Trainer]) -> list[StepSyncs]:
    """Build a Trainer (uncounted), then count its syncs during `train()`."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()  # each row sets its own mixed precision (the state is a process singleton)
    trainer = build()
    with SyncCounter() as counter:
        steps = SyncSteps(counter)
        trainer.add_callback(steps)
        trainer.train()
    return steps.steps


def mlp_row(**settings: Any) -> Callable[[], list[StepSyncs]]:
    def run() -> list[StepSyncs]:
        with tempfile.TemporaryDirectory() as output_dir:
            config = {"task": "text_classification", "metrics": ["accuracy"], "optimizer": "adamw"}
            config.update(step_settings(output_dir), learning_rate=1e-3, num_epochs=10, **settings)
            torch.manual_seed(0)
            return count_trainer(lambda: Trainer(MLP(), TrainerConfig(**config), Blobs(256, 0), Blobs(EVAL_SAMPLES, 1)))

    return run


def recipe_row(name: str) -> Callable[[], list[StepSyncs]]:
    def run() -> list[StepSyncs]:
        from tamrin.recipes import build_trainer, load_recipe

        with tempfile.TemporaryDirectory() as output_dir:
            settings = step_settings(output_dir).items()
            overrides = [f"trainer.{key}={'null' if value is None else value}" for key, value in settings]
            overrides += ["dataset.num_samples=256", f"dataset.eval_num_samples={EVAL_SAMPLES}"]
            return count_trainer(lambda: build_trainer(load_recipe(name, overrides)))

    return run


def accelerate_loop() -> list[StepSyncs]:
    """The canonical accelerate loop on the MLP, its step windows marked by hand."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    model = MLP()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train = DataLoader(Blobs(256, 0), batch_size=BATCH, shuffle=True)
    evaluation = DataLoader(Blobs(EVAL_SAMPLES, 1), batch_size=BATCH)
    model, optimizer, train, evaluation = accelerator.prepare(model, optimizer, train, evaluation)
    steps: list[StepSyncs] = []
    logged = 0.0
    with SyncCounter() as counter, tempfile.TemporaryDirectory() as output_dir:
        batches = iter(train)
        for step in range(1, STEPS + 1):
            start, kinds = len(counter.events), {"update"}
            batch = next(batches)
            loss = F.cross_entropy(model(batch["x"])["logits"], batch["labels"])
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            if step % LOG == 0:
                kinds.add("log")
                logged = loss.item()  # what a loop prints or logs
            if step % EVAL == 0:
                kinds.add("eval")
                correct, total = torch.zeros((), device=accelerator.device), 0
                with torch.no_grad():
                    for eval_batch in evaluation:
                        predictions = model(eval_batch["x"])["logits"].argmax(-1)
                        predictions, labels = accelerator.gather_for_metrics((predictions, eval_batch["labels"]))
                        correct += (predictions == labels).sum()
                        total += len(labels)
                logged = (correct / total).item()
            if step % SAVE == 0:
                kinds.add("save")
                accelerator.save_state(f"{output_dir}/step-{step}")
            steps.append(StepSyncs(step, kinds, counter.events[start:]))
    assert logged == logged  # read: not NaN
    return steps


def gradscaler_loop(fused: bool) -> Callable[[], list[StepSyncs]]:
    """fp16 with torch's GradScaler and AdamW: unfused, the scaler reads found_inf on the host each update."""

    def run() -> list[StepSyncs]:
        torch.manual_seed(0)
        model = MLP()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
        scaler = torch.amp.GradScaler("cpu")
        x, y = torch.randn(BATCH, 8), torch.randint(0, 3, (BATCH,))
        steps = []
        with SyncCounter() as counter:
            for step in range(1, 5):
                start = len(counter.events)
                with torch.autocast("cpu", dtype=torch.float16):
                    loss = F.cross_entropy(model(x)["logits"], y)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad()
                steps.append(StepSyncs(step, {"update"}, counter.events[start:]))
        return steps

    return run


def has_optimizer_kwargs() -> bool:
    """Whether this checkout's Trainer passes `optimizer_kwargs` to its optimizer (not before that field)."""
    import inspect

    try:
        from tamrin.trainer.building import build_config_optimizer
    except ImportError:  # a checkout from before the redesign (the "before" column)
        return False
    return "optimizer_kwargs" in inspect.getsource(build_config_optimizer)


ROWS: dict[str, tuple[str, Callable[[], list[StepSyncs]] | None]] = {
    "mlp": ("tamrin Trainer, MLP, fp32", mlp_row()),
    "mlp-bf16": ("tamrin Trainer, MLP, bf16", mlp_row(mixed_precision="bf16")),
    "mlp-clip": ("tamrin Trainer, MLP, max_grad_norm=1", mlp_row(max_grad_norm=1.0)),
    "mlp-accum": ("tamrin Trainer, MLP, gradient_accumulation_steps=2", mlp_row(gradient_accumulation_steps=2)),
    "mlp-skip": ('tamrin Trainer, MLP, nan_policy="skip"', mlp_row(nan_policy="skip")),
    "mlp-fused": (
        "tamrin Trainer, MLP, AdamW fused=True",
        mlp_row(optimizer_kwargs={"fused": True}) if has_optimizer_kwargs() else None,
    ),
    "accelerate": ("plain accelerate loop, same MLP", accelerate_loop),
    "gradscaler": ("plain loop, fp16 GradScaler, AdamW", gradscaler_loop(fused=False)),
    "gradscaler-fused": ("plain loop, fp16 GradScaler, AdamW fused=True", gradscaler_loop(fused=True)),
    "crnn": ("default recipe (CRNN + CTC)", recipe_row("default")),
    "text": ("text_classification recipe (packed BiGRU)", recipe_row("text_classification")),
    "tagging": ("sequence_labeling recipe (packed BiLSTM)", recipe_row("sequence_labeling")),
    "image": ("image_classification recipe (CNN)", recipe_row("image_classification")),
    "generation": ("text_generation recipe (transformer)", recipe_row("text_generation")),
}


def cell(steps: list[StepSyncs]) -> str:
    """The most syncs of these steps: avoidable, then '+N' inherent."""
    if not steps:
        return "-"
    worst = max(steps, key=lambda step: (len(step.avoidable), len(step.events)))
    inherent = len(worst.events) - len(worst.avoidable)
    return f"{len(worst.avoidable)}" + (f" +{inherent}" if inherent else "")


def columns(steps: list[StepSyncs]) -> dict[str, list[StepSyncs]]:
    only = {kind: [s for s in steps if kind in s.kinds and s.kinds <= {kind, "update"}] for kind in COLUMNS[1:]}
    return {"ordinary": [s for s in steps if s.kinds <= {"update"}], **only}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--verbose", action="store_true", help="print every sync's file:line per column")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| | " + " | ".join(f"{name} step" for name in COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    details = []
    for key in args.rows.split(","):
        title, run = ROWS[key]
        if run is None:
            print(f"| {title} | " + " | ".join("n/a" for _ in COLUMNS) + " |", flush=True)
            continue
        by_column = columns(run())
        print(f"| {title} | " + " | ".join(cell(by_column[name]) for name in COLUMNS) + " |", flush=True)
        for name in COLUMNS:
            if by_column[name]:
                worst = max(by_column[name], key=lambda step: len(step.events))
                details.append((f"{title}: {name} step {worst.step}", worst.events))
    if args.verbose:
        for heading, events in details:
            print(f"\n{heading}\n{format_events(events) or '   (none)'}")


if __name__ == "__main__":
    main()
