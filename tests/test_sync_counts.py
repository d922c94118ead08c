"""Host syncs per training step, counted on a CPU as if its device were a GPU (tamrin.testing.syncs).

Pins what docs/performance.md reports: an ordinary training step of the Trainer never waits for the
device; a built-in model's step has no avoidable sync (the inherent ones are listed with their
reason); a log step reads the device once; evaluation syncs grow with the batches, never with the
samples. `benchmarks/syncs.py` prints the same counts as a table.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate.state import AcceleratorState
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from tamrin import Trainer, TrainerConfig
from tamrin.recipes import build_trainer, load_recipe
from tamrin.testing.sync_steps import StepSyncs, SyncSteps, gpu_batches
from tamrin.testing.syncs import SyncCounter
from tamrin.trainer.nonfinite import NonFiniteGuard


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each test sets its own mixed precision; accelerate keeps one state per process."""
    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(x)}

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(outputs["logits"], batch["labels"])


class Blobs(Dataset):
    def __init__(self, size: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, 8, generator=generator)
        self.y = torch.randint(0, 3, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": self.y[index]}


def mlp_trainer(output_dir: Path, evaluation: Dataset | None = None, **overrides: Any) -> Trainer:
    settings: dict[str, Any] = {
        "output_dir": str(output_dir), "device": "cpu", "task": "text_classification", "metrics": ["accuracy"],
        "optimizer": "adamw", "learning_rate": 1e-3, "batch_size": 4, "num_epochs": 1, "log_steps": 5,
        "save_steps": 7, "progress": "none", "seed": 0,
    }  # fmt: skip
    settings.update(overrides)
    torch.manual_seed(0)
    return Trainer(MLP(), TrainerConfig(**settings), train_dataset=Blobs(64), eval_dataset=evaluation)


def train_counting(trainer: Trainer) -> list[StepSyncs]:
    with SyncCounter() as counter:
        steps = SyncSteps(counter)
        trainer.add_callback(steps)
        trainer.train()
    return steps.steps


def report(steps: list[StepSyncs]) -> str:
    from tamrin.testing.syncs import format_events

    return "\n".join(f"step {s.step} {sorted(s.kinds)}:\n{format_events(s.events)}" for s in steps if s.events)


# -- the Trainer's own steps ------------------------------------------------------------------------

TRAINER_SETTINGS = {
    "fp32": {},
    "bf16": {"mixed_precision": "bf16"},
    "clipping": {"max_grad_norm": 1.0},
    "accumulation": {"gradient_accumulation_steps": 2},
    "nan_policy_stop": {"nan_policy": "stop"},
}


@pytest.mark.parametrize("setting", list(TRAINER_SETTINGS))
def test_an_ordinary_trainer_step_never_waits_for_the_device(tmp_path, monkeypatch, setting):
    monkeypatch.setattr(NonFiniteGuard, "FLUSH_EVERY", 3)  # the batched NaN check runs inside ordinary steps too
    steps = train_counting(mlp_trainer(tmp_path, **TRAINER_SETTINGS[setting]))
    ordinary = [step for step in steps if step.ordinary]
    assert len(ordinary) >= 10
    assert [step for step in ordinary if step.events] == [], report(ordinary)


def test_nan_policy_skip_reads_the_device_once_per_update_and_never_between_updates(tmp_path, monkeypatch):
    """The read decides whether to apply the update: the documented cost of nan_policy="skip"."""
    monkeypatch.setattr(NonFiniteGuard, "FLUSH_EVERY", 3)
    steps = train_counting(mlp_trainer(tmp_path, nan_policy="skip", gradient_accumulation_steps=2))
    ordinary = [step for step in steps if step.ordinary]
    assert {step.step: len(step.events) for step in ordinary} == {
        step.step: int("update" in step.kinds) for step in ordinary
    }, report(ordinary)


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_log_step_reads_the_device_once(tmp_path, policy):
    steps = train_counting(mlp_trainer(tmp_path, nan_policy=policy))
    log_steps = [step for step in steps if step.kinds == {"log", "update"}]
    assert [step.step for step in log_steps] == [5, 10, 15]
    assert [len(step.events) for step in log_steps] == [1, 1, 1], report(log_steps)


def test_a_save_step_reads_the_device_once_for_its_loss_bookkeeping(tmp_path):
    """The NaN check and the running loss folded into the checkpoint share one read (an MLP's weights
    are written by safetensors from raw memory, which the counter does not see)."""
    steps = train_counting(mlp_trainer(tmp_path))
    save_steps = [step for step in steps if step.kinds == {"save", "update"}]
    assert [len(step.events) for step in save_steps] == [1, 1], report(save_steps)


def evaluation_syncs(trainer: Trainer) -> list[str]:
    with SyncCounter() as counter, gpu_batches(trainer, counter):
        trainer.evaluate()
    return [f"{event.op} {event.where}" for event in counter.events]


def test_evaluation_syncs_grow_with_the_batches_not_with_the_samples(tmp_path):
    four_batches_of_8 = evaluation_syncs(mlp_trainer(tmp_path / "a", Blobs(32, 1), eval_batch_size=8))
    four_batches_of_16 = evaluation_syncs(mlp_trainer(tmp_path / "b", Blobs(64, 1), eval_batch_size=16))
    assert four_batches_of_8 == four_batches_of_16


# -- the built-in models ------------------------------------------------------------------------------

RECIPES = {
    "crnn": "default",
    "text_classifier": "text_classification",
    "sequence_labeler": "sequence_labeling",
    "text_generator": "text_generation",
    "image_classifier": "image_classification",
}

INHERENT = {
    # PyTorch's CUDA CTC copies the target lengths, input lengths and batch offsets from the host into
    # the kernel's tensors, forward and backward (aten/src/ATen/native/cuda/LossCTC.cu); no caller can
    # avoid them short of cuDNN's CTC, which needs int32 targets on the host.
    "crnn": {"aten._ctc_loss": 3, "aten._ctc_loss_backward": 3},
}

PER_TOKEN = "aten.is_nonzero"  # text_generator.generate asks after each token whether every row has ended


def recipe_trainer(output_dir: Path, model: str, *overrides: str) -> Trainer:
    settings = [
        f"trainer.output_dir={output_dir}", "dataset.num_samples=48", "dataset.eval_num_samples=16",
        "trainer.batch_size=8", "trainer.max_steps=4", "trainer.log_steps=100", "trainer.save_steps=100",
        "trainer.progress=none", "trainer.do_evaluate=false",
    ]  # fmt: skip
    return build_trainer(load_recipe(RECIPES[model], [*settings, *overrides]))


@pytest.mark.parametrize("model", list(RECIPES))
def test_a_built_in_models_training_step_has_no_avoidable_sync(tmp_path, model):
    steps = train_counting(recipe_trainer(tmp_path, model))
    ordinary = [step for step in steps if step.ordinary]
    assert len(ordinary) == 3
    for step in ordinary:
        assert step.avoidable == [], report([step])
        assert collections.Counter(event.op for event in step.events) == INHERENT.get(model, {})


@pytest.mark.parametrize("model", list(RECIPES))
def test_a_built_in_models_evaluation_syncs_grow_with_the_batches_not_with_the_samples(tmp_path, model):
    counts = []
    for samples, batch_size in ((16, 4), (32, 8)):
        trainer = recipe_trainer(
            tmp_path / str(samples),
            model,
            f"dataset.eval_num_samples={samples}",
            f"trainer.eval_batch_size={batch_size}",
        )
        counts.append([event for event in evaluation_syncs(trainer) if not event.startswith(PER_TOKEN)])
    assert counts[0] == counts[1]
