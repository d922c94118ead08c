"""Benchmark: step overhead of tamrin against a raw accelerate loop and peer trainers.

Run ``python benchmarks/peers.py`` with tamrin's environment. The peers live in a separate virtual
environment (they pin their own versions of transformers and friends)::

    python -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install torch accelerate hezar transformers lightning pandas tensorboard \\
        requests datasets pillow omegaconf safetensors torchmetrics huggingface-hub
    python benchmarks/peers.py --peers-python /tmp/peers-venv/bin/python

Every framework trains the same model on the same data with the same optimizer (AdamW, a fresh one
seeded identically), batch size, one epoch, the loss logged every 50 steps, one torch thread, in
its own subprocess; the rounds are interleaved (every framework once per round, the order rotating)
and each subprocess warms up with a short run before the timed one. The raw loop
(``overhead.run_manual_loop``: accelerate-prepared model, optimizer and loader, a tqdm bar) runs in
both environments, and each framework's ratio is to the raw loop of its own environment.

Workloads: ``mlp`` (the tiny MLP of benchmarks/overhead.py: framework overhead dominates) and
``crnn`` (the CRNN of the default recipe on pre-rendered synthetic plates, batch 64).

Loop time is first step to last step as the framework's own hooks see it (tamrin ``on_train_begin``
-> last ``on_step_end``; transformers ``on_train_begin`` -> last ``on_step_end``; Lightning
``on_train_start`` -> last ``on_train_batch_end``; hezar has no callbacks, so its
``inner_training_loop`` call is timed, which also builds its data loader). Total time is the whole
``train()`` / ``fit()`` call (logs, the checkpoint each one saves at the end of the epoch).
A framework that cannot run is reported with its error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(BENCHMARKS.parent))  # tamrin's CRNN from the checkout, in either environment

import overhead  # noqa: E402
from overhead import LOG_STEPS, SEED, DictDataset, Workload  # noqa: E402

FRAMEWORKS = ("raw", "tamrin", "raw-peers", "transformers", "lightning", "hezar")
PEER_FRAMEWORKS = {"raw-peers", "transformers", "lightning", "hezar"}
CRNN_BATCH = 64
CRNN_LEARNING_RATE = 3e-3
WARMUP = {"mlp": 100, "crnn": 3}  # steps of the untimed run in each subprocess


# -- workloads ---------------------------------------------------------------------------------------
def crnn_data(path: Path, samples: int) -> Path:
    """Render `samples` synthetic plates once (tamrin's dataset) into a tensor file every worker loads."""
    if path.exists():
        return path
    from tamrin.datasets import build_dataset

    dataset = build_dataset("synthetic_plates", split="train", num_samples=samples)
    items = [dataset[index] for index in range(samples)]
    batch = dataset.data_collator(items)  # pads labels with 0 (the CTC blank) and records their lengths
    tmp = path.with_suffix(".tmp")
    torch.save({key: batch[key].contiguous() for key in ("pixel_values", "labels", "label_lengths")}, tmp)
    os.replace(tmp, path)
    return path


def load_workload(name: str, steps: int, data: str | None) -> Workload:
    if name == "mlp":
        return overhead.mlp_workload(steps)
    from tamrin.models.crnn import CRNN, CRNNConfig

    columns = torch.load(data, weights_only=True)
    columns = {key: value[: steps * CRNN_BATCH] for key, value in columns.items()}
    return Workload(
        "crnn", lambda: CRNN(CRNNConfig()), DictDataset(**columns), CRNN_BATCH, CRNN_LEARNING_RATE, ("pixel_values",)
    )


def head(workload: Workload, steps: int) -> Workload:
    """The first `steps` batches of `workload` (for the warm-up run)."""
    columns = {key: value[: steps * workload.batch_size] for key, value in workload.dataset.columns.items()}
    return Workload(
        workload.name,
        workload.make_model,
        DictDataset(**columns),
        workload.batch_size,
        workload.learning_rate,
        workload.input_keys,
    )


# -- one framework per function; each returns {"loop", "total", "loop_cpu", "total_cpu", "loss"} ----
class _Clock:
    """Wall and CPU time of a loop: `start()` at its first hook, `tick()` at every step's end."""

    def start(self) -> None:
        self.began, self.began_cpu = time.perf_counter(), time.process_time()

    def tick(self) -> None:
        self.ended, self.ended_cpu = time.perf_counter(), time.process_time()

    def result(self, total: float, total_cpu: float, loss: float, steps_run: int) -> dict[str, float]:
        return {
            "steps_run": steps_run,
            "loop": self.ended - self.began,
            "loop_cpu": self.ended_cpu - self.began_cpu,
            "total": total,
            "total_cpu": total_cpu,
            "loss": loss,
        }


def _timed(call: Any) -> tuple[Any, float, float]:
    began, began_cpu = time.perf_counter(), time.process_time()
    value = call()
    return value, time.perf_counter() - began, time.process_time() - began_cpu


class _LossWrapper(nn.Module):
    """Adds the loss to the model's outputs (transformers reads `outputs["loss"]`)."""

    def __init__(self, core: nn.Module, input_keys: tuple[str, ...]) -> None:
        super().__init__()
        self.core, self.input_keys = core, input_keys

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.core(**{key: batch[key] for key in self.input_keys})
        return {"loss": self.core.compute_loss(outputs, batch), **outputs}


def run_transformers(workload: Workload, output_dir: str) -> dict[str, float]:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    clock = _Clock()

    class Timer(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.start()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.tick()

    core, optimizer = workload.model_and_optimizer()
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=workload.batch_size,
        num_train_epochs=1,
        learning_rate=workload.learning_rate,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,  # no clipping, as in every other loop here
        logging_steps=LOG_STEPS,
        save_strategy="epoch",
        report_to=["tensorboard"],
        use_cpu=True,
        seed=SEED,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        disable_tqdm=False,
    )
    trainer = Trainer(
        model=_LossWrapper(core, workload.input_keys),
        args=args,
        train_dataset=workload.dataset,
        optimizers=(optimizer, None),
        callbacks=[Timer()],
    )
    output, total, total_cpu = _timed(trainer.train)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return clock.result(total, total_cpu, losses[-1] if losses else output.training_loss, trainer.state.global_step)


def run_lightning(workload: Workload, output_dir: str) -> dict[str, float]:
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.data import DataLoader

    clock = _Clock()

    class Timer(L.Callback):
        def on_train_start(self, trainer: Any, module: Any) -> None:
            clock.start()

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            clock.tick()

    core, optimizer = workload.model_and_optimizer()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.core = core

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            outputs = self.core(**{key: batch[key] for key in workload.input_keys})
            loss = self.core.compute_loss(outputs, batch)
            self.log("train.loss", loss, prog_bar=True)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return optimizer

    loader = DataLoader(
        workload.dataset, batch_size=workload.batch_size, shuffle=True, generator=torch.Generator().manual_seed(SEED)
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        log_every_n_steps=LOG_STEPS,
        logger=TensorBoardLogger(save_dir=output_dir),
        default_root_dir=output_dir,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[Timer()],
    )
    module = Module()
    _, total, total_cpu = _timed(lambda: trainer.fit(module, loader))
    loss = trainer.callback_metrics.get("train.loss")
    return clock.result(total, total_cpu, float(loss) if loss is not None else float("nan"), trainer.global_step)


class _HezarModel(nn.Module):
    """What hezar's Trainer asks of a model: dict outputs, `compute_loss(logits, labels, ...)`,
    a `preprocessor`, `save(path)`, and parameter counts for its banner."""

    preprocessor = "none"  # hezar refuses a model without one; nothing here preprocesses
    is_generative = False

    def __init__(self, core: nn.Module, input_keys: tuple[str, ...]) -> None:
        super().__init__()
        self.core, self.input_keys = core, input_keys

    # Named parameters: hezar passes the batch keys that forward's signature names.
    def forward(self, x: torch.Tensor | None = None, pixel_values: torch.Tensor | None = None) -> dict:
        inputs = {"x": x, "pixel_values": pixel_values}
        return self.core(**{key: inputs[key] for key in self.input_keys})

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor, label_lengths: Any = None) -> torch.Tensor:
        batch = {"labels": labels} if label_lengths is None else {"labels": labels, "label_lengths": label_lengths}
        return self.core.compute_loss({"logits": logits}, batch)

    def save(self, path: str, filename: str | None = None, config_filename: str | None = None) -> None:
        from safetensors.torch import save_model

        os.makedirs(path, exist_ok=True)
        save_model(self, os.path.join(path, filename or "model.safetensors"))

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def run_hezar(workload: Workload, output_dir: str) -> dict[str, float]:
    from hezar.trainer import Trainer, TrainerConfig

    clock = _Clock()

    class TimedTrainer(Trainer):
        def inner_training_loop(self, epoch_num: int) -> Any:
            clock.start()
            try:
                return super().inner_training_loop(epoch_num)
            finally:
                clock.tick()

    core, optimizer = workload.model_and_optimizer()
    config = TrainerConfig(
        output_dir=output_dir,
        task="text_classification",  # picks hezar's metrics handler; nothing is evaluated (do_evaluate=False)
        device="cpu",
        use_cpu=True,
        num_epochs=1,
        batch_size=workload.batch_size,
        learning_rate=workload.learning_rate,
        log_steps=LOG_STEPS,
        do_evaluate=False,
        seed=SEED,
    )
    trainer = TimedTrainer(
        model=_HezarModel(core, workload.input_keys), config=config, train_dataset=workload.dataset, optimizer=optimizer
    )
    _, total, total_cpu = _timed(trainer.train)
    # hezar's tracker holds the mean loss of the whole epoch, not of the last log_steps steps
    return clock.result(total, total_cpu, float(trainer.train_loss_tracker.avg), trainer.state.global_step)


RUNNERS = {
    "raw": lambda workload, output_dir: overhead.run_manual_loop(workload, use_accelerate=True),
    "raw-peers": lambda workload, output_dir: overhead.run_manual_loop(workload, use_accelerate=True),
    "tamrin": overhead.run_tamrin,
    "transformers": run_transformers,
    "lightning": run_lightning,
    "hezar": run_hezar,
}


def versions(framework: str) -> str:
    import accelerate

    names = {"tamrin": "tamrin", "transformers": "transformers", "lightning": "lightning", "hezar": "hezar"}
    text = f"torch {torch.__version__}, accelerate {accelerate.__version__}"
    if framework in names:
        module = __import__(names[framework])
        text = f"{framework} {module.__version__}, {text}"
    return text


def worker(args: argparse.Namespace) -> int:
    """One framework, one warm-up run and one timed run; prints the result as one JSON line."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    workload = load_workload(args.workload, args.steps, args.data)
    run = RUNNERS[args.framework]
    with tempfile.TemporaryDirectory(prefix=f"peers-{args.framework}-") as workdir:
        overhead.quietly(lambda: run(head(workload, WARMUP[args.workload]), os.path.join(workdir, "warmup")))
        result = overhead.quietly(lambda: run(workload, os.path.join(workdir, "timed")))
    result.update(framework=args.framework, versions=versions(args.framework), steps=workload.steps)
    print(json.dumps(result))
    return 0


# -- the orchestrator -------------------------------------------------------------------------------
def spawn(python: str, framework: str, workload: str, steps: int, threads: int, data: str | None) -> dict[str, Any]:
    command = [python, __file__, "worker", framework, "--workload", workload, "--steps", str(steps)]
    command += ["--threads", str(threads)] + (["--data", data] if data else [])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": ""}
    env.pop("PYTHONPATH", None)
    completed = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = completed.stdout.strip().splitlines()
    if completed.returncode == 0 and lines:
        return json.loads(lines[-1])
    error = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"framework": framework, "error": f"exit {completed.returncode}: {error}"}


def benchmark(workload: str, args: argparse.Namespace) -> None:
    data = None
    steps = args.mlp_steps if workload == "mlp" else args.crnn_steps
    if workload == "crnn":
        path = Path(tempfile.gettempdir()) / f"tamrin-bench-plates-{steps * CRNN_BATCH}.pt"
        data = str(crnn_data(path, steps * CRNN_BATCH))
    frameworks = [name for name in FRAMEWORKS if name in args.frameworks]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in frameworks}
    errors: dict[str, str] = {}
    info: dict[str, str] = {}
    for round_index in range(args.rounds):
        shift = round_index % len(frameworks)
        for name in frameworks[shift:] + frameworks[:shift]:
            if name in errors:
                continue
            python = args.peers_python if name in PEER_FRAMEWORKS else sys.executable
            result = spawn(python, name, workload, steps, args.threads, data)
            if "error" in result:
                errors[name] = result["error"]
                continue
            results[name].append(result)
            info[name] = result["versions"]
        shown = ", ".join(f"{n} {results[n][-1]['loop']:.2f}s" for n in frameworks if results[n] and n not in errors)
        print(f"[{workload}] round {round_index + 1}/{args.rounds}: {shown}", file=sys.stderr, flush=True)
    report(workload, steps, results, errors, info)


def report(
    workload: str, steps: int, results: dict[str, list[dict[str, Any]]], errors: dict[str, str], info: dict[str, str]
) -> None:
    what = "tiny MLP, batch 32" if workload == "mlp" else f"CRNN (default recipe model), batch {CRNN_BATCH}"
    print(f"\n## {workload}: {what}, {steps} steps, medians of {max(map(len, results.values()))} interleaved runs\n")
    print(
        "| framework | env | wall / step | CPU / step | wall ratio | CPU ratio | paired wall ratio | total wall ratio |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return statistics.median(run[key] for run in runs)

    for name, runs in results.items():
        if name in errors or not runs:
            print(f"| {name} | - | could not run: {errors.get(name, 'no result')} | | | | | |")
            continue
        base_name = "raw-peers" if name in PEER_FRAMEWORKS else "raw"
        base = results.get(base_name) or []
        env = "peers" if name in PEER_FRAMEWORKS else "tamrin"
        cells = [f"{median(runs, 'loop') / steps * 1e3:.3f} ms", f"{median(runs, 'loop_cpu') / steps * 1e3:.3f} ms"]
        if base:
            cells += [f"{median(runs, key) / median(base, key):.3f}" for key in ("loop", "loop_cpu")]
            cells.append(f"{statistics.median(r['loop'] / b['loop'] for r, b in zip(runs, base)):.3f}")
            cells.append(f"{median(runs, 'total') / median(base, 'total'):.3f}")
        else:
            cells += ["-"] * 4
        print(f"| {name} | {env} | " + " | ".join(cells) + " |")
    print()
    for name, text in info.items():
        last = results[name][-1]
        print(f"- {name}: {text}; {last['steps_run']} steps run; last logged loss {last['loss']:.4f}")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    run_worker = commands.add_parser("worker", help="(internal) run one framework once and print JSON")
    run_worker.add_argument("framework", choices=FRAMEWORKS)
    run_worker.add_argument("--workload", choices=("mlp", "crnn"), required=True)
    run_worker.add_argument("--steps", type=int, required=True)
    run_worker.add_argument("--threads", type=int, default=1)
    run_worker.add_argument("--data", default=None)
    parser.add_argument("--peers-python", default="/tmp/peers-venv/bin/python", help="the peers' interpreter")
    parser.add_argument("--workloads", nargs="+", default=["mlp", "crnn"], choices=("mlp", "crnn"))
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--mlp-steps", type=int, default=2000)
    parser.add_argument("--crnn-steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in every framework (default 1)")
    args = parser.parse_args(argv)
    if args.command == "worker":
        return worker(args)
    print(f"# Step overhead against peers (python {sys.version.split()[0]}, {os.cpu_count()} CPUs)", flush=True)
    for workload in args.workloads:
        benchmark(workload, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
