"""What a Hezar or Hugging Face user ports to tamrin means what they think (issue 14): names, weights, habits.

Each test takes a habit of those users (an override as Hezar documents it, an Accelerator built as
accelerate documents it, ...) and checks that tamrin trains as the habit means, or says at build
time what it does instead. Reference numbers come from plain torch arithmetic, not from tamrin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from porting_models import Line, Pairs, StopAtStep, config
from torch import nn
from torch.utils.data import Dataset

from tamrin import Trainer, TrainerConfig
from tamrin.configs import ConfigError
from tamrin.trainer.callbacks import Callback


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
