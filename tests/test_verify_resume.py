"""`tamrin verify-resume`: the comparison of recorded runs (fast) and real runs of recipes (slow)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tamrin.cli import main
from tamrin.tools.verify_resume import Divergence, VerifyResult, compare_runs, verify_resume

W = "sha256:aaaa (float32[2])"


def _record(step: int, loss: float = 1.0, **changes: dict[str, str]) -> dict:
    record = {
        "step": step,
        "loss": float(loss).hex(),
        "weights": {"layer.weight": W, "layer.bias": W},
        "optimizer": {"state[layer.weight].exp_avg": W, "param_groups[0].lr": (0.1).hex()},
        "rng": {"torch": W},
    }
    for key, values in changes.items():
        record[key] = {**record[key], **values}
    return record


def _write_runs(workdir: Path, straight: list[dict], interrupted: list[dict], resumed: list[dict], loaded=None):
    header = {"event": "start", "parameter_names": ["layer.weight", "layer.bias"]}
    for name, records in (("straight", straight), ("interrupted", interrupted), ("resumed", resumed)):
        (workdir / name).mkdir(parents=True)
        extra = [loaded] if name == "resumed" and loaded else []
        lines = [header, *extra, *records]
        (workdir / name / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def _loaded(step: int, **changes) -> dict:
    record = _record(step, **changes)
    record.pop("loss")
    return {"event": "loaded", **record}


def test_identical_runs_have_no_divergence(tmp_path):
    steps = [_record(s, loss=1 / s) for s in range(1, 5)]
    _write_runs(tmp_path, steps, steps[:2], steps[2:], loaded=_loaded(2))
    assert compare_runs(tmp_path, resume_step=2) is None


def test_runs_that_differ_before_the_save_are_reported_as_not_deterministic(tmp_path):
    steps = [_record(s, loss=1 / s) for s in range(1, 5)]
    other = [_record(1, loss=1.0), _record(2, loss=0.25)]
    _write_runs(tmp_path, steps, other, steps[2:], loaded=_loaded(2))
    divergence = compare_runs(tmp_path, resume_step=2)
    assert (divergence.step, divergence.what, divergence.phase) == (2, "loss", "before the save")
    assert divergence.expected == "0.5 (0x1.0000000000000p-1)"


def test_state_that_the_reload_does_not_restore_is_named(tmp_path):
    steps = [_record(s) for s in range(1, 5)]
    loaded = _loaded(2, optimizer={"state[layer.weight].exp_avg": "sha256:bbbb (float32[2])"})
    _write_runs(tmp_path, steps, steps[:2], steps[2:], loaded=loaded)
    divergence = compare_runs(tmp_path, resume_step=2)
    assert divergence == Divergence(
        2, "optimizer state", "state[layer.weight].exp_avg", W, "sha256:bbbb (float32[2])", "after the reload"
    )


def test_first_resumed_step_and_tensor_that_differ_are_named(tmp_path):
    steps = [_record(s) for s in range(1, 6)]
    resumed = [_record(3), _record(4, weights={"layer.bias": "sha256:cccc (float32[2])"}), _record(5, loss=9.0)]
    _write_runs(tmp_path, steps, steps[:2], resumed, loaded=_loaded(2))
    divergence = compare_runs(tmp_path, resume_step=2)
    assert (divergence.step, divergence.what, divergence.name, divergence.phase) == (
        4,
        "weight",
        "layer.bias",
        "after the resume",
    )


def test_a_step_the_resumed_run_never_trained_is_a_divergence(tmp_path):
    steps = [_record(s) for s in range(1, 5)]
    _write_runs(tmp_path, steps, steps[:2], steps[2:3], loaded=_loaded(2))
    divergence = compare_runs(tmp_path, resume_step=2)
    assert (divergence.step, divergence.what, divergence.actual) == (4, "step", "never trained")


def test_final_files_are_compared_bitwise_and_name_the_tensor(tmp_path):
    steps = [_record(s) for s in range(1, 5)]
    _write_runs(tmp_path, steps, steps[:2], steps[2:], loaded=_loaded(2))
    for run, bias in (("straight", 0.0), ("resumed", -0.0)):  # equal as numbers, not as bits
        (tmp_path / run / "final").mkdir()
        weights = {"layer.weight": torch.ones(2), "layer.bias": torch.full((2,), bias)}
        save_file(weights, str(tmp_path / run / "final" / "model.safetensors"))
    divergence = compare_runs(tmp_path, resume_step=2)
    assert (divergence.step, divergence.name, divergence.phase) == (4, "model.safetensors: layer.bias", "at the end")


def test_report_says_match_or_names_the_step_tensor_and_phase(tmp_path):
    result = VerifyResult("mine.yaml", 8, 4, 3, 7, None, tmp_path)
    assert "Resume is exact" in result.report() and "identical at all 8 steps" in result.report()
    result.divergence = Divergence(5, "weight", "head.bias", "sha256:1", "sha256:2", "after the resume")
    report = result.report()
    assert "MISMATCH at step 5, after the resume: weight 'head.bias' differs" in report
    assert "Resume is NOT exact" in report and str(tmp_path) in report


def test_cli_bad_override_and_too_few_steps_exit_2(capsys):
    assert main(["verify-resume", "trainer.batch_size=zero"]) == 2
    assert "`batch_size='zero'` has the wrong type" in capsys.readouterr().err
    assert main(["verify-resume", "--steps", "1"]) == 2
    assert "`steps=1` must be >= 2" in capsys.readouterr().err
    assert main(["verify-resume", "--import", "no_such_module_of_yours"]) == 2
    assert "Cannot import `no_such_module_of_yours` (--import)" in capsys.readouterr().err


# -- real runs (three fresh processes each) ---------------------------------------------------
USER_MODULE = '''
"""A user's own model, dataset and callbacks, registered for recipes."""
from dataclasses import dataclass

import torch
from torch import nn

from tamrin.datasets.base import Dataset, DatasetConfig, register_dataset
from tamrin.models import Model, ModelConfig, register_model
from tamrin.trainer.callbacks import Callback, register_callback


@dataclass
class TinyConfig(ModelConfig):
    name: str = "vr_tiny"
    hidden: int = 16


@register_model("vr_tiny", config_class=TinyConfig)
class Tiny(Model):
    def __init__(self, config):
        super().__init__(config)
        self.layers = nn.Sequential(nn.Linear(4, config.hidden), nn.ReLU(), nn.Dropout(0.3), nn.Linear(config.hidden, 1))

    def forward(self, x, labels=None):
        return {"logits": self.layers(x).squeeze(-1)}

    def compute_loss(self, outputs, batch):
        return nn.functional.mse_loss(outputs["logits"], batch["labels"])


@dataclass
class BrokenConfig(ModelConfig):
    name: str = "vr_broken"


@register_model("vr_broken", config_class=BrokenConfig)
class Broken(Tiny):
    config_class = BrokenConfig

    def __init__(self, config):
        Model.__init__(self, config)
        self.layers = nn.Linear(4, 1)

    def forward(self, x, labels=None):
        raise RuntimeError("boom in the user's forward")


@dataclass
class NumbersConfig(DatasetConfig):
    name: str = "vr_numbers"
    task: str = "regression"
    num_samples: int = 40


@register_dataset("vr_numbers", config_class=NumbersConfig)
class Numbers(Dataset):
    def num_rows(self):
        return self.config.num_samples

    def get_item(self, index):
        x = torch.randn(4, generator=torch.Generator().manual_seed(index))
        return {"x": x, "labels": x.sum()}


@register_callback("vr_forgetful_warmup")
class ForgetfulWarmup(Callback):
    """Scales the learning rate by a step counter that it does not save: resume cannot be exact."""

    def __init__(self):
        self.calls = 0

    def on_step_begin(self, trainer):
        self.calls += 1
        for group in trainer.optimizer.param_groups:
            group["lr"] = 0.01 * min(1.0, self.calls / 10)
'''

RECIPE = """
task: regression
model:
  name: vr_tiny
dataset:
  name: vr_numbers
trainer:
  output_dir: unused
  batch_size: 4
  gradient_accumulation_steps: 3
  optimizer: adamw
  learning_rate: 0.01
  lr_scheduler: linear
  metrics: [mse]
  do_evaluate: false
  log_steps: 2
  seed: 3
"""


@pytest.fixture
def user_project(tmp_path, monkeypatch):
    """A project folder with a user's module and recipe, as the working directory (as a user runs it)."""
    (tmp_path / "vr_user_models.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_users_own_recipe_resumes_exactly(user_project):
    result = verify_resume("recipe.yaml", imports=["vr_user_models"], steps=8, workdir=user_project / "runs")
    assert result.match, result.report()
    assert (result.steps, result.resume_step) == (8, 4)  # step 4 is inside an accumulation window of 3
    assert result.num_weights == 4 and result.num_optimizer_values > 4


@pytest.mark.slow
def test_unsaved_callback_state_is_caught_at_the_first_resumed_step(user_project, capsys):
    code = main(
        ["verify-resume", "recipe.yaml", "callbacks=[vr_forgetful_warmup]", "--import", "vr_user_models",
         "--steps", "6", "--resume-at", "3", "--workdir", str(user_project / "runs")]
    )  # fmt: skip
    report = capsys.readouterr().out
    assert code == 1, report
    # step 4 lies inside an accumulation window: no weight moved yet, but the learning rate already differs
    assert "MISMATCH at step 4, after the resume: optimizer state 'param_groups[0].lr' differs" in report
    assert "a callback or scheduler whose state is not saved" in report


@pytest.mark.slow
def test_a_recipe_that_fails_to_train_exits_2_with_its_error(user_project, capsys):
    assert main(["verify-resume", "recipe.yaml", "model.name=vr_broken", "--import", "vr_user_models"]) == 2
    err = capsys.readouterr().err
    assert "The straight run failed (exit code 1" in err and "boom in the user's forward" in err


@pytest.mark.slow
def test_default_recipe_resumes_exactly(tmp_path, capsys):
    overrides = ["dataset.num_samples=64", "dataset.eval_num_samples=8", "trainer.batch_size=8"]
    code = main(["verify-resume", *overrides, "--steps", "6"])
    report = capsys.readouterr().out
    assert code == 0, report
    assert "Resume is exact" in report and "identical at all 6 steps" in report
