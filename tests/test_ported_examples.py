"""The two scripts issue 14 ported, kept as tests: Hezar's own CRNN example and an HF-style BERT script.

Hezar's "A Simple Example" (docs/tutorial/training/trainer.md) with only what needs the Hub changed:
the pretrained model is a CRNN saved here with another charset (Hezar's is Persian), and the data is
tamrin's synthetic plates instead of `Dataset.load("hezarai/persian-license-plate-v1")`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from tamrin import Trainer, TrainerConfig
from tamrin.datasets import build_dataset
from tamrin.models import build_model


def test_hezars_crnn_example_runs_with_only_the_hub_names_changed(tmp_path: Path) -> None:
    base_model_path = str(tmp_path / "crnn-base")  # Hezar: "hezarai/crnn-base-fa-v2"
    torch.manual_seed(0)
    build_model("crnn", charset="0123456789", rnn_hidden_size=16).save(base_model_path)  # another charset

    train_dataset = build_dataset("synthetic_plates", split="train", num_samples=48, eval_num_samples=16)
    eval_dataset = build_dataset("synthetic_plates", split="test", num_samples=48, eval_num_samples=16)

    model = build_model("crnn", charset=train_dataset.config.charset, rnn_hidden_size=16)

    train_config = TrainerConfig(
        output_dir=str(tmp_path / "crnn-plate-fa-v1"),
        task="image2text",
        device="cpu",  # Hezar: "cuda"
        init_weights_from=base_model_path,
        batch_size=8,
        num_epochs=2,
        metrics=["cer"],
        metric_for_best_model="cer",
        progress="none",
    )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(
            config=train_config,
            model=model,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=train_dataset.data_collator,
            preprocessor=train_dataset.preprocessor,
        )
    logs = trainer.train()

    skipped = [str(w.message) for w in caught if "keep their fresh initialisation" in str(w.message)]
    assert len(skipped) == 1 and "head.weight" in skipped[0]  # the head of another charset, named once
    assert trainer.metric_for_best_model == "evaluation.cer"
    assert trainer.state.best_metric == pytest.approx(min(trainer.load_csv_logs()["evaluation.cer"].dropna()))
    assert "evaluation.cer" in logs


def hf_style_run(output_dir: Path, stop_at: int | None = None, resume: bool = False) -> Trainer:
    """The HF-style script: a small BERT from a BertConfig, class-weighted loss, accumulation, linear warmup."""
    transformers = pytest.importorskip("transformers")
    datasets = pytest.importorskip("datasets")
    from tamrin.trainer.callbacks import Callback

    class WeightedLossTrainer(Trainer):  # HF's compute_loss, ported to (outputs, batch)
        def compute_loss(self, outputs, batch):
            weights = torch.tensor([1.0, 3.0], device=outputs["logits"].device)
            return torch.nn.functional.cross_entropy(outputs["logits"], batch["labels"], weight=weights)

    class StopAt(Callback):
        def on_step_end(self, trainer) -> None:
            if trainer.state.global_step == stop_at:
                trainer.control.should_save = trainer.control.should_stop = True

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 30, (40, 6), generator=generator)
    data = datasets.Dataset.from_dict(
        {"input_ids": ids.tolist(), "attention_mask": [[1] * 6] * 40, "labels": (ids[:, 0] > 15).long().tolist()}
    ).with_format("torch")
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(
        transformers.BertConfig(
            vocab_size=32,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            num_labels=2,
        )  # fmt: skip
    )
    config = TrainerConfig(
        output_dir=str(output_dir),
        task="text_classification",
        metrics=["accuracy", "f1"],
        num_epochs=3,
        batch_size=8,
        gradient_accumulation_steps=2,
        learning_rate=1e-3,
        optimizer="adamw",
        lr_scheduler="linear",
        warmup_steps=2,
        save_steps=4,
        do_evaluate=False,
        resume_from_checkpoint=resume,
        progress="none",
    )
    callbacks = [StopAt()] if stop_at else []
    trainer = WeightedLossTrainer(model=model, config=config, train_dataset=data, callbacks=callbacks)
    trainer.train()
    return trainer


def test_the_hf_style_script_resumes_bitwise(tmp_path: Path) -> None:
    straight = hf_style_run(tmp_path / "straight")
    hf_style_run(tmp_path / "resumed", stop_at=7)  # stops inside an accumulation window, after a save at 7
    resumed = hf_style_run(tmp_path / "resumed", resume=True)
    assert resumed.state.global_step == straight.state.global_step == 15
    for (name, a), b in zip(straight.unwrapped_model.named_parameters(), resumed.unwrapped_model.parameters()):
        assert torch.equal(a, b), name
