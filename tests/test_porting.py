"""What a Hezar or Hugging Face user ports to tamrin means what they think (issue 14).

Each test takes a habit of those users (an override as Hezar documents it, an Accelerator built as
accelerate documents it, ...) and checks that tamrin trains as the habit means, or says at build
time what it does instead. Reference numbers come from plain torch arithmetic, not from tamrin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tamrin import Trainer, TrainerConfig
from tamrin.configs import ConfigError
from tamrin.trainer.callbacks import Callback


class Line(nn.Module):
    """y = w * x with one weight: every update can be checked by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        predictions = self.w * x
        out = {"logits": predictions}
        if labels is not None:
            out["loss"] = ((predictions - labels) ** 2).mean()
        return out


class Pairs(Dataset):
    """x = 1..n, labels = 2x: the loss pulls w towards 2."""

    def __init__(self, n: int) -> None:
        self.x = torch.arange(1, n + 1, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "labels": 2 * self.x[index]}


def config(tmp_path: Path, **overrides: Any) -> TrainerConfig:
    settings: dict[str, Any] = {
        "output_dir": str(tmp_path / "run"),
        "task": "regression",
        "metrics": [],
        "batch_size": 1,
        "num_epochs": 1,
        "optimizer": "sgd",
        "learning_rate": 0.01,
        "dataloader_shuffle": False,
        "do_evaluate": False,
        "progress": "none",
        "seed": 0,
    }
    return TrainerConfig(**{**settings, **overrides})


def reference_sgd(xs: list[float], windows: list[int], lr: float) -> float:
    """Plain SGD on y = w x, each update the mean gradient of its window's batches (batch size 1)."""
    w, position = 0.0, 0
    for size in windows:
        batch = xs[position : position + size]
        gradient = sum(2 * (w * x - 2 * x) * x for x in batch) / size
        w -= lr * gradient
        position += size
    return w


# -- accumulation -----------------------------------------------------------------------------------
def test_the_short_last_window_of_an_epoch_is_the_mean_of_its_batches(tmp_path):
    trainer = Trainer(Line(), config(tmp_path, gradient_accumulation_steps=2, num_epochs=1), train_dataset=Pairs(3))
    trainer.train()
    expected = reference_sgd([1.0, 2.0, 3.0], windows=[2, 1], lr=0.01)
    assert trainer.unwrapped_model.w.item() == pytest.approx(expected, rel=1e-6)
    assert trainer.state.optimizer_steps == 2


def test_max_steps_inside_a_window_ends_it_with_the_mean_of_its_batches(tmp_path):
    cfg = config(tmp_path, gradient_accumulation_steps=3, max_steps=4)
    trainer = Trainer(Line(), cfg, train_dataset=Pairs(6))
    trainer.train()
    expected = reference_sgd([1.0, 2.0, 3.0, 4.0], windows=[3, 1], lr=0.01)
    assert trainer.unwrapped_model.w.item() == pytest.approx(expected, rel=1e-6)


def test_an_accelerator_that_accumulates_differently_from_the_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"gradient_accumulation_steps=4.*`gradient_accumulation_steps=2`"):
        Trainer(
            Line(),
            config(tmp_path, gradient_accumulation_steps=2),
            train_dataset=Pairs(4),
            accelerator=Accelerator(cpu=True, gradient_accumulation_steps=4),
        )


def test_an_accelerator_with_the_configs_accumulation_trains_like_the_trainers_own(tmp_path):
    own = Trainer(Line(), config(tmp_path / "a", gradient_accumulation_steps=2), train_dataset=Pairs(5))
    own.train()
    given = Trainer(
        Line(),
        config(tmp_path / "b", gradient_accumulation_steps=2),
        train_dataset=Pairs(5),
        accelerator=Accelerator(cpu=True, gradient_accumulation_steps=2),
    )
    given.train()
    assert given.unwrapped_model.w.item() == pytest.approx(own.unwrapped_model.w.item(), rel=1e-6)


def test_fp16_on_cpu_is_refused_with_the_valid_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"`mixed_precision='fp16'` is not available on CPU.*'no', 'bf16'"):
        Trainer(Line(), config(tmp_path, mixed_precision="fp16", use_cpu=True), train_dataset=Pairs(4))


# -- overrides keep the loop's bookkeeping ----------------------------------------------------------
class HezarStyleUpdate(Trainer):
    """optimization_step exactly as Hezar's docs show it."""

    def optimization_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()


def test_an_optimization_step_override_as_hezar_documents_keeps_counting_and_scheduling(tmp_path):
    cfg = config(tmp_path, lr_scheduler="linear", num_epochs=2, max_grad_norm=0.5)
    plain = Trainer(Line(), cfg, train_dataset=Pairs(4))
    plain.train()
    overridden = HezarStyleUpdate(Line(), config(tmp_path / "o", lr_scheduler="linear", num_epochs=2, max_grad_norm=0.5),
                                  train_dataset=Pairs(4))  # fmt: skip
    overridden.train()
    assert overridden.state.optimizer_steps == plain.state.optimizer_steps == 8
    assert overridden.optimizer.param_groups[0]["lr"] == plain.optimizer.param_groups[0]["lr"]
    assert overridden.unwrapped_model.w.item() == pytest.approx(plain.unwrapped_model.w.item(), rel=1e-6)


# -- the LR schedule's cadence ----------------------------------------------------------------------
class Rates(Callback):
    """The learning rate each update uses."""

    def __init__(self) -> None:
        self.used: list[float] = []

    def on_step_begin(self, trainer) -> None:
        self.used.append(trainer.optimizer.param_groups[0]["lr"])


def test_lr_scheduling_steps_on_a_warmup_schedule_warns_that_it_does_not_apply(tmp_path):
    with pytest.warns(UserWarning, match=r"`lr_scheduling_steps=5` does not apply to lr_scheduler='linear'"):
        Trainer(Line(), config(tmp_path, lr_scheduler="linear", lr_scheduling_steps=5), train_dataset=Pairs(4))


def test_the_first_line_of_a_run_says_when_the_scheduler_steps(tmp_path, capsys):
    cfg = config(tmp_path, lr_scheduler="exponential", lr_scheduler_kwargs={"gamma": 0.5}, progress="plain")
    Trainer(Line(), cfg, train_dataset=Pairs(4)).train()
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.endswith("LR scheduler 'exponential' steps once per epoch.")


def test_lr_scheduling_steps_counts_training_steps_as_hezar_does(tmp_path):
    """Accumulation 2, lr_scheduling_steps=3: the scheduler steps after the updates whose window holds
    step 3, 6, 9, ... (Hezar counts batches), not every third update."""
    rates = Rates()
    cfg = config(
        tmp_path,
        gradient_accumulation_steps=2,
        lr_scheduler="exponential",
        lr_scheduler_kwargs={"gamma": 0.5},
        lr_scheduling_steps=3,
        learning_rate=1.0,
    )
    Trainer(Line(), cfg, train_dataset=Pairs(12), callbacks=[rates]).train()
    # steps 1-2 (update 1), 3-4 (update 2: holds step 3), 5-6 (holds 6), 7-8, 9-10 (holds 9), 11-12 (holds 12)
    assert rates.used == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.125, 0.125]


def test_cosine_annealing_per_epoch_spans_the_run_in_epochs(tmp_path):
    """T_max defaults to the scheduler steps of the run (4 epochs), so the LR reaches 0 at the end."""
    cfg = config(tmp_path, lr_scheduler="cosine_annealing", num_epochs=4, learning_rate=1.0)
    trainer = Trainer(Line(), cfg, train_dataset=Pairs(3))
    trainer.train()
    assert trainer.lr_scheduler.T_max == 4
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


# -- what a training_step override may return --------------------------------------------------------
class ReturnsDict(Trainer):
    """The HF / Lightning habit: return a dict holding the loss."""

    def training_step(self, batch):
        outputs = self.forward(batch)
        self.backward(outputs["loss"])
        return {"loss": outputs["loss"].detach(), "logits": outputs["logits"]}


class ReturnsFloat(Trainer):
    def training_step(self, batch):
        outputs = self.forward(batch)
        self.backward(outputs["loss"])
        return outputs["loss"].item()


class ReturnsNothing(Trainer):
    def training_step(self, batch):
        self.backward(self.forward(batch)["loss"])


@pytest.mark.parametrize("trainer_class", [ReturnsDict, ReturnsFloat])
def test_a_training_step_returning_a_dict_or_a_float_trains_and_logs_its_loss(tmp_path, trainer_class):
    plain = Trainer(Line(), config(tmp_path / "plain", log_steps=2), train_dataset=Pairs(4))
    plain.train()
    trainer = trainer_class(Line(), config(tmp_path / "run", log_steps=2), train_dataset=Pairs(4))
    trainer.train()
    assert trainer.unwrapped_model.w.item() == plain.unwrapped_model.w.item()
    assert trainer.load_csv_logs()["train.loss"].tolist() == pytest.approx(plain.load_csv_logs()["train.loss"].tolist())


def test_a_training_step_returning_nothing_is_a_clear_error(tmp_path):
    trainer = ReturnsNothing(Line(), config(tmp_path), train_dataset=Pairs(4))
    with pytest.raises(TypeError, match=r"training_step returned NoneType; it must return the step's loss"):
        trainer.train()


# -- a plain DataLoader from create_train_dataloader ----------------------------------------------------
class ShuffledLoader(Trainer):
    """docs/training.md invites this override: a plain DataLoader with shuffle=True."""

    def __init__(self, *args: Any, generator: bool = True, **kwargs: Any) -> None:
        self.with_generator = generator
        super().__init__(*args, **kwargs)

    def create_train_dataloader(self, dataset):
        generator = torch.Generator() if self.with_generator else None
        return DataLoader(dataset, batch_size=2, shuffle=True, generator=generator)


class StopAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.state.global_step == self.step:
            trainer.control.should_save = trainer.control.should_stop = True


def test_a_plain_shuffled_dataloader_trains_and_resumes_exactly_mid_epoch(tmp_path):
    cfg = {"num_epochs": 3, "batch_size": 2, "save_steps": 100}
    with pytest.warns(UserWarning, match=r"sampler \(RandomSampler\) cannot start mid-epoch.*resume is exact"):
        straight = ShuffledLoader(Line(), config(tmp_path / "a", **cfg), train_dataset=Pairs(8))
    straight.train()
    with pytest.warns(UserWarning):
        first = ShuffledLoader(Line(), config(tmp_path / "b", **cfg), train_dataset=Pairs(8), callbacks=[StopAtStep(7)])
    first.train()
    with pytest.warns(UserWarning):
        resumed = ShuffledLoader(
            Line(), config(tmp_path / "b", resume_from_checkpoint=True, **cfg), train_dataset=Pairs(8)
        )
    resumed.train()
    assert resumed.state.global_step == straight.state.global_step == 12
    assert resumed.unwrapped_model.w.item() == straight.unwrapped_model.w.item()
    manifest = (tmp_path / "b" / "run" / "checkpoints" / "00000007" / "manifest.yaml").read_text()
    assert "cannot start mid-epoch" in manifest


def test_a_dataloader_without_a_generator_warns_that_its_resume_is_not_exact(tmp_path):
    with pytest.warns(UserWarning, match=r"drawn from the global random state.*generator=torch.Generator\(\)"):
        ShuffledLoader(Line(), config(tmp_path), train_dataset=Pairs(8), generator=False)


# -- callbacks at resume ----------------------------------------------------------------------------------
class Counter(Callback):
    """A stateful callback: counts steps, and a checkpoint keeps the count."""

    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, trainer) -> None:
        self.steps += 1

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = state["steps"]


class Printer(Callback):
    """A callback without state (a monitor a user adds or drops between runs)."""

    def on_log(self, trainer, logs) -> None:
        pass


def interrupted_run(tmp_path: Path, callbacks: list[Callback]) -> None:
    Trainer(
        Line(), config(tmp_path, num_epochs=2), train_dataset=Pairs(4), callbacks=[*callbacks, StopAtStep(3)]
    ).train()


def test_callbacks_without_state_may_change_between_a_run_and_its_resume(tmp_path):
    counter = Counter()
    interrupted_run(tmp_path, [counter])
    resumed_counter = Counter()
    resumed = Trainer(
        Line(),
        config(tmp_path, num_epochs=2, resume_from_checkpoint=True),
        train_dataset=Pairs(4),
        callbacks=[Printer(), resumed_counter],  # a new stateless callback, and StopAtStep gone
    )
    resumed.train()
    assert resumed_counter.steps == 8  # 3 before the stop, 5 after: the state came back


def test_a_stateful_callback_missing_at_resume_is_named(tmp_path):
    interrupted_run(tmp_path, [Counter()])
    resumed = Trainer(Line(), config(tmp_path, num_epochs=2, resume_from_checkpoint=True), train_dataset=Pairs(4))
    with pytest.raises(
        ValueError, match=r"holds the state of callback\(s\) \['Counter'\], which this trainer does not"
    ):
        resumed.train()


# -- compile=True -------------------------------------------------------------------------------------
def test_a_compiled_model_trains_and_saves_its_own_parameter_names(tmp_path):
    trainer = Trainer(Line(), config(tmp_path, compile=True), train_dataset=Pairs(4))
    trainer.train()
    path = trainer.save(tmp_path / "saved")
    from safetensors.torch import load_file

    assert list(load_file(path / "model.safetensors")) == ["w"]  # not "_orig_mod.w"
    assert not isinstance(trainer.unwrapped_model, torch._dynamo.eval_frame.OptimizedModule)


@pytest.mark.slow
def test_a_packaged_recipe_trains_compiled_and_resumes_without_compile(tmp_path):
    from safetensors.torch import load_file

    from tamrin.cli import main
    from tamrin.models import Model

    common = [
        "text_classification",
        "dataset.num_samples=100",
        f"trainer.output_dir={tmp_path}",
        "trainer.progress=none",
    ]
    assert main(["train", *common, "trainer.compile=true", "trainer.num_epochs=1"]) == 0
    checkpoint = sorted((tmp_path / "checkpoints").iterdir())[-1]
    assert not any(name.startswith("_orig_mod") for name in load_file(checkpoint / "model.safetensors"))
    resume = ["trainer.compile=false", "trainer.num_epochs=2", "trainer.resume_from_checkpoint=true"]
    assert main(["train", *common, *resume]) == 0
    assert Model.load(tmp_path / "model").predict(["a fine day"])  # the final model loads and reads raw text


# -- metric_for_best_model as Hezar and HF write it -------------------------------------------------------
class Always(Dataset):
    """Evaluation data: the same 4 pairs as training."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = torch.tensor(float(index + 1))
        return {"x": x, "labels": 2 * x}


@pytest.mark.parametrize("name", ["mse", "eval_mse", "evaluation.mse"])
def test_a_plain_or_hf_metric_name_means_the_evaluation_metric(tmp_path, name):
    cfg = config(tmp_path, metrics=["mse"], do_evaluate=True, num_epochs=3, metric_for_best_model=name)
    trainer = Trainer(Line(), cfg, train_dataset=Pairs(4), eval_dataset=Always())
    trainer.train()
    assert trainer.metric_for_best_model == "evaluation.mse"
    logged = trainer.load_csv_logs().dropna(subset=["evaluation.mse"])
    assert trainer.state.best_metric == pytest.approx(logged["evaluation.mse"].min())
    assert trainer.state.best_step == int(logged.loc[logged["evaluation.mse"].idxmin(), "step"])


def test_train_loss_as_the_best_metric_is_tracked_and_drives_early_stopping(tmp_path):
    cfg = config(
        tmp_path, metric_for_best_model="train.loss", log_steps=1, num_epochs=50, early_stopping_patience=2,
        learning_rate=0.3,  # too large: the loss grows, so early stopping ends the run
    )  # fmt: skip
    trainer = Trainer(Line(), cfg, train_dataset=Pairs(4))
    trainer.train()
    losses = trainer.load_csv_logs()["train.loss"].tolist()
    assert trainer.state.best_metric == pytest.approx(min(losses))
    assert trainer.state.global_step < 200  # stopped early
    assert trainer.state.global_step == losses.index(min(losses)) + 1 + 2  # two logs without improvement


def test_evaluation_metrics_are_printed_after_each_evaluation(tmp_path, capsys):
    cfg = config(tmp_path, metrics=["mse"], do_evaluate=True, num_epochs=2, progress="plain")
    Trainer(Line(), cfg, train_dataset=Pairs(4), eval_dataset=Always()).train()
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Evaluation at step")]
    assert len(printed) == 2 and "evaluation.mse=" in printed[0] and "evaluation.loss=" in printed[0]


# -- names ported from Hezar --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr_scheduler", "sequential", r"`lr_scheduler='sequential'` is a Hezar name that tamrin does not support"),
        ("task", "text_detection", r"`task='text_detection'` is a Hezar name that tamrin does not support"),
        ("optimizer", "sdg", r"Hezar's spelling of SGD; tamrin's name is 'sgd'"),
    ],
)
def test_a_hezar_name_tamrin_lacks_is_named_as_such_not_matched_to_a_look_alike(field, value, message):
    with pytest.raises(ConfigError, match=message) as caught:
        TrainerConfig(**{field: value})
    assert "Did you mean" not in str(caught.value)


def test_typos_and_abbreviations_still_get_a_suggestion():
    with pytest.raises(ConfigError, match=r"Did you mean `exponential`"):
        TrainerConfig(lr_scheduler="exponentail")
    with pytest.raises(ConfigError, match=r"Did you mean `text_classification`"):
        TrainerConfig(task="text_class")


def test_hezars_torch_linear_schedule_is_linear_lr(tmp_path):
    cfg = config(tmp_path, lr_scheduler="linear_lr", lr_scheduler_kwargs={"start_factor": 0.5, "total_iters": 2},
                 num_epochs=3)  # fmt: skip
    trainer = Trainer(Line(), cfg, train_dataset=Pairs(2))
    trainer.train()
    assert type(trainer.lr_scheduler).__name__ == "LinearLR" and trainer.lr_scheduler.last_epoch == 3  # per epoch
    with pytest.raises(ConfigError, match=r"torch's LinearLR and ConstantLR \(Hezar's 'linear' and 'constant'\)"):
        Trainer(Line(), config(tmp_path / "b", lr_scheduler="linear", lr_scheduler_kwargs={"start_factor": 0.5}),
                train_dataset=Pairs(2))  # fmt: skip


# -- init_weights_from a model with another head ----------------------------------------------------------
class Classifier(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.head(torch.relu(self.body(x)))
        return {"logits": logits, "loss": nn.functional.cross_entropy(logits, labels)}


class Features(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": torch.full((4,), float(index)), "labels": torch.tensor(index % 2)}


def test_init_weights_from_a_model_with_another_head_loads_the_body_and_names_the_head(tmp_path):
    from safetensors.torch import save_model

    torch.manual_seed(1)
    pretrained = Classifier(classes=3)
    (tmp_path / "pretrained").mkdir()
    save_model(pretrained, str(tmp_path / "pretrained" / "model.safetensors"))
    cfg = config(tmp_path, task="text_classification", init_weights_from=str(tmp_path / "pretrained"))
    with pytest.warns(UserWarning, match=r"loaded 2 of 4 tensors; 2 keep their fresh initialisation: "
                      r"\['head.bias', 'head.weight'\] \(shape differs: head.bias \(3,\) -> \(5,\)"):  # fmt: skip
        trainer = Trainer(Classifier(classes=5), cfg, train_dataset=Features())
    assert torch.equal(trainer.unwrapped_model.body.weight, pretrained.body.weight)


def test_init_weights_from_a_wholly_different_model_is_refused(tmp_path):
    from safetensors.torch import save_model

    (tmp_path / "other").mkdir()
    save_model(nn.Sequential(nn.Linear(2, 2)), str(tmp_path / "other" / "model.safetensors"))
    cfg = config(tmp_path, task="text_classification", init_weights_from=str(tmp_path / "other"))
    with pytest.raises(RuntimeError, match=r"No tensor of .* fits Classifier \(by name and shape\)"):
        Trainer(Classifier(classes=2), cfg, train_dataset=Features())


# -- HF habits: label_names, remove_unused_columns, compute_loss ---------------------------------------------
class TargetKeyed(Dataset):
    """A regression dataset whose targets are under `target`, not `labels`."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = torch.tensor(float(index + 1))
        return {"x": x, "target": 2 * x}


class TargetLine(Line):
    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return super().forward(x, labels=target)


def test_a_metrics_handler_asked_for_no_metrics_does_not_read_the_targets(tmp_path):
    cfg = config(tmp_path, metrics=[], do_evaluate=True)
    trainer = Trainer(TargetLine(), cfg, train_dataset=TargetKeyed(), eval_dataset=TargetKeyed())
    assert set(trainer.train()) >= {"evaluation.loss"}


def test_label_names_tells_the_metrics_where_the_targets_are(tmp_path):
    cfg = config(tmp_path, metrics=["mse"], do_evaluate=True, label_names=["target"])
    trainer = Trainer(TargetLine(), cfg, train_dataset=TargetKeyed(), eval_dataset=TargetKeyed())
    w = trainer.unwrapped_model.w.item()
    metrics = trainer.evaluate()
    assert metrics["mse"] == pytest.approx(sum((w * x - 2 * x) ** 2 for x in (1.0, 2.0, 3.0, 4.0)) / 4)


class HFStyleLoss(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]


def test_a_compute_loss_with_the_hf_signature_is_refused_with_the_port(tmp_path):
    with pytest.raises(
        TypeError, match=r"(?s)has the HF Trainer's signature.*def compute_loss\(self, outputs, batch\)"
    ):
        HFStyleLoss(Line(), config(tmp_path), train_dataset=Pairs(4))


def test_an_hf_dataset_with_its_text_column_trains_with_datacollatorwithpadding(tmp_path):
    """HF's habit: tokenize with map(), keep the `text` column, pad with DataCollatorWithPadding."""
    datasets = pytest.importorskip("datasets")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["good", "bad", "fine", "awful", "day", "food"]
    core = Tokenizer(models.WordLevel({"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}, "[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]")
    texts = ["good day", "bad food", "fine good day", "awful", "good food", "bad day awful"]
    data = datasets.Dataset.from_dict({"text": texts, "label": [1, 0, 1, 0, 1, 0]})
    data = data.map(lambda row: tokenizer(row["text"]), batched=True)
    config_ = transformers.BertConfig(vocab_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=8, num_labels=2)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config_)
    cfg = config(tmp_path, task="text_classification", metrics=["accuracy"], batch_size=2, do_evaluate=True)
    with pytest.warns(UserWarning, match=r"Columns \['text'\] are not arguments of BertForSequenceClassification"):
        trainer = Trainer(model, cfg, train_dataset=data, eval_dataset=data, preprocessor=tokenizer,
                          data_collator=transformers.DataCollatorWithPadding(tokenizer))  # fmt: skip
    logs = trainer.train()
    assert "evaluation.accuracy" in logs
    saved = trainer.save(tmp_path / "saved")  # the Trainer's tokenizer travels with the weights
    assert (
        transformers.AutoTokenizer.from_pretrained(saved)("good day")["input_ids"] == tokenizer("good day")["input_ids"]
    )
    checkpoint = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert (checkpoint / "tokenizer.json").is_file()
