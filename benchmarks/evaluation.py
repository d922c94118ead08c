"""Benchmark: evaluation throughput and memory, tamrin's streaming metrics against collecting all predictions.

Run ``python benchmarks/evaluation.py``. A classifier (32 features -> 64 -> 32 classes) is evaluated
on n generated samples (1e5 to 1e6), batch 1024, with accuracy and macro F1:

* ``tamrin``: ``Trainer.evaluate()``; the metrics handler updates torchmetrics' counters per batch
  (update / compute / reset), so its memory does not depend on n.
* ``collect``: what HF Trainer's evaluation loop does: keep every batch's logits and labels, then
  concatenate them and compute the same metrics once at the end (torchmetrics' functional forms),
  so memory grows with n x num_classes.

The samples are computed from their indices batch by batch, so the dataset itself holds nothing.
Each (method, n) runs in a fresh subprocess; the table gives the median of ``--repeats``
interleaved runs: samples per second (wall and CPU time) and the growth of the process's peak
resident memory during the evaluation (Linux: the peak is reset through /proc/self/clear_refs just
before the evaluation and read from VmHWM after). Both methods must report the same metrics.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from overhead import TinyMLP  # noqa: E402

FEATURES, HIDDEN, CLASSES = 32, 64, 32
BATCH = 1024
SIZES = [10**5, 3 * 10**5, 10**6]


def _as_batch(items: Any) -> Any:
    return items  # `__getitems__` already returns a whole batch


class GeneratedDataset(torch.utils.data.Dataset):
    """n samples computed from their indices, a batch at a time (the DataLoader calls `__getitems__`)."""

    data_collator = staticmethod(_as_batch)

    def __init__(self, n: int) -> None:
        self.n = n
        self.weights = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(7))

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(indices[0])
        x = torch.randn(len(indices), FEATURES, generator=generator)
        noise = torch.randn(len(indices), CLASSES, generator=generator)
        labels = (x @ self.weights + 0.5 * noise).argmax(dim=1)
        return {"x": x, "labels": labels}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([index])
        return {key: value[0] for key, value in batch.items()}


def make_model() -> TinyMLP:
    """The classifier of overhead.py, wider: 32 features -> 64 -> 32 classes."""
    torch.manual_seed(0)
    return TinyMLP(FEATURES, HIDDEN, CLASSES)


def evaluate_tamrin(dataset: GeneratedDataset, output_dir: str) -> dict[str, float]:
    from tamrin import Trainer, TrainerConfig

    config = TrainerConfig(
        output_dir=output_dir,
        task="text_classification",
        metrics=["accuracy", {"name": "f1", "average": "macro"}],
        eval_batch_size=BATCH,
        device="cpu",
        progress="none",
    )
    trainer = Trainer(model=make_model(), config=config, eval_dataset=dataset)
    return _measured(trainer.evaluate)


def evaluate_collect(dataset: GeneratedDataset, output_dir: str) -> dict[str, float]:
    from torch.utils.data import DataLoader
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    model = make_model().eval()
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=False, collate_fn=dataset.data_collator)

    @torch.inference_mode()
    def run() -> dict[str, float]:
        all_logits, all_labels, loss_sum = [], [], 0.0
        for batch in loader:
            outputs = model(batch["x"])
            loss_sum += float(model.compute_loss(outputs, batch)) * len(batch["labels"])
            all_logits.append(outputs["logits"])
            all_labels.append(batch["labels"])
        logits, labels = torch.cat(all_logits), torch.cat(all_labels)
        return {
            "loss": loss_sum / len(labels),
            "accuracy": float(multiclass_accuracy(logits, labels, num_classes=CLASSES, average="micro")),
            "f1": float(multiclass_f1_score(logits, labels, num_classes=CLASSES, average="macro")),
        }

    return _measured(run)


def _rss_peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _measured(evaluate: Any) -> dict[str, Any]:
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    before = _rss_kib()
    began, began_cpu = time.perf_counter(), time.process_time()
    metrics = evaluate()
    wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    return {"wall": wall, "cpu": cpu, "peak_growth_kib": _rss_peak_kib() - before, "metrics": metrics}


METHODS = {"tamrin": evaluate_tamrin, "collect": evaluate_collect}


def worker(method: str, n: int) -> None:
    torch.set_num_threads(1)
    dataset = GeneratedDataset(n)
    with tempfile.TemporaryDirectory() as output_dir:
        METHODS[method](GeneratedDataset(BATCH * 4), output_dir)  # warm-up: imports, first allocations
        result = METHODS[method](dataset, output_dir)
    print(json.dumps(result))


def fmt_mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("worker", help="(internal) one evaluation; prints JSON")
    one.add_argument("method", choices=METHODS)
    one.add_argument("n", type=int)
    parser.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "worker":
        worker(args.method, args.n)
        return 0
    print(f"# Evaluation: {CLASSES}-class classifier, batch {BATCH}, accuracy + macro F1, 1 torch thread\n")
    print(
        "| samples | tamrin samples/s (wall) | tamrin samples/s (CPU) | tamrin peak memory growth "
        "| collect samples/s (wall) | collect samples/s (CPU) | collect peak memory growth | same metrics |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for n in args.sizes:
        runs: dict[str, list[dict[str, Any]]] = {method: [] for method in METHODS}
        for repeat in range(args.repeats):
            for method in list(METHODS)[repeat % 2 :] + list(METHODS)[: repeat % 2]:
                command = [sys.executable, __file__, "worker", method, str(n)]
                completed = subprocess.run(command, capture_output=True, text=True, check=True)
                runs[method].append(json.loads(completed.stdout.strip().splitlines()[-1]))
        cells = [f"{n:.0e}"]
        for method in METHODS:
            results = runs[method]
            cells.append(f"{n / statistics.median(r['wall'] for r in results):,.0f}")
            cells.append(f"{n / statistics.median(r['cpu'] for r in results):,.0f}")
            cells.append(fmt_mib(statistics.median(r["peak_growth_kib"] for r in results)))
        ours, theirs = runs["tamrin"][0]["metrics"], runs["collect"][0]["metrics"]
        same = all(abs(ours[key] - theirs[key]) < 1e-5 for key in ("loss", "accuracy", "f1"))
        cells.append("yes" if same else f"NO: {ours} vs {theirs}")
        print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
