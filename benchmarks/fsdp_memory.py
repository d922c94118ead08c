"""Benchmark: peak memory per process of a ~50M-parameter Transformer trained by 2 CPU processes, DDP vs FSDP.

Run ``python benchmarks/fsdp_memory.py`` (it launches ``torchrun --nproc_per_node 2`` once per
strategy; add ``--steps N`` for more updates). The model is tamrin's TextGenerator with 16 blocks of
width 512 (50.5M parameters, 202 MB in fp32), trained with AdamW on random tokens (batch 4 x 64 per
process) for a few updates, with ``TrainerConfig(strategy=...)``:

* ``ddp``: every process holds the whole model, its gradients, DDP's gradient buckets and AdamW's
  two moments (~4 x 202 MB, plus the buckets);
* ``fsdp``: every process holds half of the parameters, gradients and moments, plus one block's
  gathered parameters and gradients while that block runs.

Each process reports (Linux, /proc/self/status) its resident memory once the Trainer is built, the
peak of the training steps (VmHWM, reset through /proc/self/clear_refs after the build, so the full
model each process builds before sharding is not counted, and read before the last step's
checkpoint), the peak of that checkpoint's save, and the bytes of parameters and optimizer state it
holds after training. The final loss (each process's own batches) must agree between strategies.

Both strategies run twice: with glibc's allocator as it comes, and with MALLOC_MMAP_THRESHOLD_
fixed at 128 KiB. FSDP frees each block's gathered parameters after using it; glibc's default
(a threshold that rises as large blocks are freed) keeps those freed buffers in its heap, where
they are not all reused, so the resident memory of a sharded run on CPU grows back towards DDP's.
With a fixed threshold, large buffers are returned to the system when freed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

from tamrin.trainer.callbacks import Callback  # noqa: E402

WIDTH, BLOCKS, HEADS, CONTEXT, BATCH = 512, 16, 8, 64, 4
MB = 2**20
MALLOC_SETTINGS = {  # glibc's allocator, as it comes, and with large blocks always given back to the system
    "default": {},
    "MALLOC_MMAP_THRESHOLD_=131072": {"MALLOC_MMAP_THRESHOLD_": "131072"},
}


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> None:
    """VmHWM := VmRSS: the peak from here on (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


class PeakBeforeLastSave(Callback):
    """A callback: the peak of the training steps, read at the last step's end (before its checkpoint
    is saved), then reset so that what train() leaves in VmHWM is the save's own peak."""

    def __init__(self, steps: int) -> None:
        self.steps, self.peak = steps, 0.0

    def on_step_end(self, trainer) -> None:
        if trainer.state.global_step == self.steps:
            self.peak = status_mb("VmHWM")
            reset_peak()


def local_bytes(tensors) -> int:
    """Bytes this process holds of `tensors` (a DTensor counts its local shard)."""
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        total += local.numel() * local.element_size()
    return total


def train(strategy: str, steps: int, output_dir: str) -> None:
    """One process of a run: build, reset the peak, train `steps` updates, report."""
    from tamrin import Trainer, TrainerConfig
    from tamrin.models.text_generator import TextGenerator, TextGeneratorConfig

    torch.manual_seed(0)
    model = TextGenerator(TextGeneratorConfig(context_length=CONTEXT, embed_dim=WIDTH, num_layers=BLOCKS,
                                              num_heads=HEADS, dropout=0.0))  # fmt: skip
    vocab = len(model.preprocessor)
    tokens = torch.randint(3, vocab, (BATCH * 2 * steps, CONTEXT), generator=torch.Generator().manual_seed(1))
    data = [{"input_ids": row, "labels": row} for row in tokens]
    config = TrainerConfig(
        output_dir=output_dir, task="text_generation", strategy=strategy, device="cpu", optimizer="adamw",
        learning_rate=1e-4, batch_size=BATCH, max_steps=steps, log_steps=steps, save_steps=None, do_evaluate=False,
        progress="none", dataloader_shuffle=False, seed=0,
    )  # fmt: skip
    steps_peak = PeakBeforeLastSave(steps)
    trainer = Trainer(model=model, config=config, train_dataset=data, callbacks=[steps_peak])
    built = status_mb("VmRSS")
    reset_peak()
    logs = trainer.train()
    save_peak = status_mb("VmHWM")
    held = trainer.unwrapped_model
    optimizer_state = [t for s in trainer.optimizer.optimizer.state.values() for t in s.values() if t.dim() > 0]
    report = {
        "rank": trainer.accelerator.process_index,
        "strategy": strategy,
        "parameters": sum(p.numel() for p in held.parameters()),
        "rss_after_build_mb": round(built, 1),
        "peak_rss_training_mb": round(steps_peak.peak, 1),
        "peak_rss_save_mb": round(save_peak, 1),
        "held_parameters_mb": round(local_bytes(held.parameters()) / MB, 1),
        "held_optimizer_state_mb": round(local_bytes(optimizer_state) / MB, 1),
        "final_loss": logs.get("train.loss"),
    }
    print("REPORT " + json.dumps(report), flush=True)
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


def launch(strategy: str, steps: int, malloc_env: dict[str, str]) -> list[dict]:
    """torchrun this script in 2 CPU processes; the reports of both."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                   "127.0.0.1", "--master_port", str(port), __file__, "--worker", strategy, "--steps", str(steps),
                   "--output-dir", tmp]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", **malloc_env}
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{strategy} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    reports = [json.loads(line[len("REPORT ") :]) for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    return sorted(reports, key=lambda r: r["rank"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        train(args.worker, args.steps, args.output_dir)
        return
    print(f"TextGenerator {BLOCKS} blocks x width {WIDTH}, AdamW, 2 CPU processes (gloo), {args.steps} updates")
    header = ("| malloc | strategy | rank | parameters | RSS after build | peak RSS, training steps "
              "| peak RSS, checkpoint save | parameters held | AdamW state held | final loss |")  # fmt: skip
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for label, malloc_env in MALLOC_SETTINGS.items():
        for strategy in ("ddp", "fsdp"):
            for r in launch(strategy, args.steps, malloc_env):
                print(f"| {label} | {strategy} | {r['rank']} | {r['parameters'] / 1e6:.1f}M | "
                      f"{r['rss_after_build_mb']:.0f} MiB | {r['peak_rss_training_mb']:.0f} MiB | "
                      f"{r['peak_rss_save_mb']:.0f} MiB | {r['held_parameters_mb']:.0f} MiB | "
                      f"{r['held_optimizer_state_mb']:.0f} MiB | {r['final_loss']:.6f} |")  # fmt: skip


if __name__ == "__main__":
    main()
