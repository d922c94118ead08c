"""The speech_recognition task end to end: a transformers CTC model (a tiny Wav2Vec2ForCTC, built from a
config, no download) trains and evaluates with tamrin's Trainer, and the handler's CER/WER are the
edit-distance rates of the model's own transcripts.

The handler scores strings: the model supplies `post_process` (greedy CTC decoding with the
`Wav2Vec2CTCTokenizer`), the collator puts the reference transcripts in `batch["texts"]`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import levenshtein
from torch.utils.data import DataLoader

from tamrin import Trainer, TrainerConfig

transformers = pytest.importorskip("transformers")

CHARSET = "abcdefgh"
SAMPLE_RATE, SECONDS = 1600, 1.0  # 1600 samples -> 79 frames after the two conv layers below
TRAIN_TEXTS = ["bad cafe", "a bag", "fed", "ace", "bead", "hag deaf"]
EVAL_TEXTS = ["cab", "head bag", "fade", "gab a deed", "edge"]  # 5: the last eval batch is partial


class TranscribingWav2Vec2ForCTC(transformers.Wav2Vec2ForCTC):
    """Wav2Vec2ForCTC plus the `post_process` a text metrics handler reads: greedy CTC decoding.

    The name must keep "ForCTC": transformers picks a model's loss function from its class name
    (a subclass named otherwise silently gets the causal-LM loss, which fails on CTC arguments).
    """

    tokenizer: Any = None

    def post_process(self, outputs: Any) -> list[str]:
        return self.tokenizer.batch_decode(outputs.logits.argmax(dim=-1))


def ctc_tokenizer(directory: Path) -> Any:
    """A character tokenizer; "|" separates words and "<pad>" (id 0) is the CTC blank."""
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{char: index + 3 for index, char in enumerate(CHARSET)}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    return transformers.Wav2Vec2CTCTokenizer(
        str(directory / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|",
        bos_token=None, eos_token=None,
    )  # fmt: skip


def tiny_wav2vec2(tokenizer: Any) -> TranscribingWav2Vec2ForCTC:
    config = transformers.Wav2Vec2Config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, mask_time_prob=0.0, layerdrop=0.0,
        ctc_loss_reduction="mean", ctc_zero_infinity=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = TranscribingWav2Vec2ForCTC(config)
    model.tokenizer = tokenizer
    return model


def utterances(texts: list[str], tokenizer: Any, seed: int) -> list[dict[str, Any]]:
    """One waveform per text: a tone per character (its pitch names the character) plus noise."""
    generator = torch.Generator().manual_seed(seed)
    length = int(SAMPLE_RATE * SECONDS)
    samples = []
    for text in texts:
        tones = [220.0 + 40.0 * CHARSET.index(char) if char != " " else 0.0 for char in text]
        pitch = torch.tensor(tones).repeat_interleave(math.ceil(length / len(tones)))[:length]
        time = torch.arange(length) / SAMPLE_RATE
        wave = torch.sin(2 * math.pi * pitch * time) + 0.1 * torch.randn(length, generator=generator)
        labels = torch.tensor(tokenizer(text).input_ids)
        samples.append({"input_values": wave, "labels": labels, "texts": text})
    return samples


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the (equal-length) waveforms; pad the labels with -100, which the CTC loss ignores."""
    labels = torch.nn.utils.rnn.pad_sequence([s["labels"] for s in samples], batch_first=True, padding_value=-100)
    waves = torch.stack([s["input_values"] for s in samples])
    return {"input_values": waves, "labels": labels, "texts": [s["texts"] for s in samples]}


def error_rates(predictions: list[str], references: list[str]) -> dict[str, float]:
    """CER and WER as total edits over total reference length (characters; whitespace-split words)."""
    cer = sum(levenshtein(p, r) for p, r in zip(predictions, references)) / sum(map(len, references))
    words = sum(levenshtein(p.split(), r.split()) for p, r in zip(predictions, references))
    return {"cer": cer, "wer": words / sum(len(r.split()) for r in references)}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, dict[str, float]]:
    """A tiny Wav2Vec2ForCTC trained for 3 steps (one epoch), evaluated at the epoch end."""
    tmp_path = tmp_path_factory.mktemp("speech")
    tokenizer = ctc_tokenizer(tmp_path)
    config = TrainerConfig(
        output_dir=str(tmp_path / "out"), task="speech_recognition", metrics=["wer", "cer"],
        metric_for_best_model="evaluation.wer", batch_size=2, eval_batch_size=2, num_epochs=1,
        optimizer="adamw", learning_rate=1e-4, seed=0, progress="none",
    )  # fmt: skip
    trainer = Trainer(
        model=tiny_wav2vec2(tokenizer),
        config=config,
        train_dataset=utterances(TRAIN_TEXTS, tokenizer, seed=0),
        eval_dataset=utterances(EVAL_TEXTS, tokenizer, seed=1),
        data_collator=collate,
    )
    return trainer, trainer.train()


def transcribe(trainer: Trainer) -> list[str]:
    """The trained model's transcripts of the eval set, batched as the Trainer batches it."""
    model = trainer.unwrapped_model.eval()
    loader = DataLoader(trainer.eval_dataset, batch_size=trainer.config.eval_batch_size, collate_fn=collate)
    with torch.inference_mode():
        return [text for batch in loader for text in model.post_process(model(input_values=batch["input_values"]))]


def test_a_wav2vec2_ctc_model_trains_and_logs_its_error_rates(run: tuple[Trainer, dict[str, float]]) -> None:
    trainer, logs = run
    assert trainer.state.global_step == 3
    assert math.isfinite(logs["train.loss"]) and math.isfinite(logs["evaluation.loss"])
    assert {"evaluation.wer", "evaluation.cer"} <= set(logs)
    assert trainer.load_csv_logs()["evaluation.wer"].dropna().tolist() == [logs["evaluation.wer"]]


def test_the_handlers_error_rates_are_those_of_the_models_transcripts(run: tuple[Trainer, dict[str, float]]) -> None:
    trainer, logs = run
    predictions = transcribe(trainer)
    assert len(predictions) == len(EVAL_TEXTS) and any(predictions), predictions  # something was decoded
    assert predictions != EVAL_TEXTS  # a barely trained model: the rates are not trivially 0
    expected = error_rates(predictions, EVAL_TEXTS)
    assert expected["cer"] > 0 and expected["wer"] > 0
    assert logs["evaluation.cer"] == pytest.approx(expected["cer"], rel=1e-6)
    assert logs["evaluation.wer"] == pytest.approx(expected["wer"], rel=1e-6)
    metrics = trainer.evaluate()  # the same weights: the same numbers
    assert {name: metrics[name] for name in ("cer", "wer")} == pytest.approx(expected, rel=1e-6)
