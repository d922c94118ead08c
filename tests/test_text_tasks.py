"""Tests for the text tasks: tokenizer, text datasets and loaders, collators, models, recipes, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from tamrin.configs import ConfigError
from tamrin.datasets import (
    SequenceLabelingConfig,
    SequenceLabelingDataset,
    TextClassificationConfig,
    TextClassificationDataset,
    TextPreprocessor,
    Tokenizer,
    TokenLabelCollator,
    build_dataset,
)
from tamrin.datasets.tasks.sequence_labeling import align_labels
from tamrin.datasets.tasks.text_classification import IGNORE_INDEX
from tamrin.models import Model, build_model
from tamrin.recipes import FINAL_MODEL_DIR, build_model_for_data, evaluate_from_recipe, load_recipe, train_from_recipe

TEXTS = ["the movie was great", "the food was awful", "service was not good at all", "a quiet hotel room"]
LABELS = ["pos", "neg", "neg", "neutral"]
SENTENCES = [
    (["John", "lives", "in", "New", "York"], ["B-PER", "O", "O", "B-LOC", "I-LOC"]),
    (["Acme", "Corp", "hired", "Maria"], ["B-ORG", "I-ORG", "O", "B-PER"]),
    (["we", "visited", "Paris"], ["O", "O", "B-LOC"]),
]


# -- helpers ---------------------------------------------------------------------------------------
def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows as CSV/TSV (lists joined by spaces), JSONL or Parquet, by the file's suffix."""
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="," if path.suffix == ".csv" else "\t")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: " ".join(v) if isinstance(v, list) else v for k, v in row.items()})
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


def classification_rows() -> list[dict[str, str]]:
    return [{"text": text, "label": label} for text, label in zip(TEXTS, LABELS)]


def tagging_rows() -> list[dict[str, list[str]]]:
    return [{"tokens": words, "tags": tags} for words, tags in SENTENCES]


def classification(path: Path, split: str = "train", preprocessor: Any = None, **fields: Any):
    config = TextClassificationConfig(files={split: str(path)}, vocab_size=200, **fields)
    return TextClassificationDataset(config, split=split, preprocessor=preprocessor)


def tagging(path: Path, split: str = "train", preprocessor: Any = None, **fields: Any):
    config = SequenceLabelingConfig(files={split: str(path)}, vocab_size=200, **fields)
    return SequenceLabelingDataset(config, split=split, preprocessor=preprocessor)


def samples(dataset: Any) -> list[tuple[list[int], Any]]:
    return [(item["input_ids"].tolist(), item["labels"].tolist()) for item in dataset]


def tiny_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "dataset.num_samples=96",
        "dataset.eval_num_samples=32",
        "dataset.vocab_size=300",
        "model.embedding_dim=16",
        "model.hidden_size=16",
        "trainer.num_epochs=1",
        "trainer.batch_size=16",
        "trainer.log_steps=2",
        f"trainer.output_dir={tmp_path / 'run'}",
        *extra,
    ]


# -- tokenizer -------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["wordpiece", "word"])
def test_tokenizer_round_trip_gives_identical_ids(tmp_path: Path, model: str) -> None:
    tokenizer = Tokenizer.train(TEXTS * 5, vocab_size=100, model=model)
    assert tokenizer.pad_id == 0 and tokenizer.backend.token_to_id("[PAD]") == 0
    assert tokenizer.backend.token_to_id("[UNK]") == tokenizer.unk_id == 1
    tokenizer.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    probes = [*TEXTS, "The MOVIE was unseenword!", ""]
    assert [loaded.encode(text) for text in probes] == [tokenizer.encode(text) for text in probes]
    assert loaded.vocab_size == tokenizer.vocab_size
    assert tokenizer.decode(tokenizer.encode("The Movie was GREAT")) == "the movie was great"


def test_tokenizer_word_ids_follow_the_words() -> None:
    tokenizer = Tokenizer.train(["john lives in paris"] * 3, vocab_size=60)
    ids, word_ids = tokenizer.encode_words(["John", "lives", "in", "Parisian", "U.S."])
    assert len(ids) == len(word_ids) and word_ids[:3] == [0, 1, 2]
    assert word_ids.count(3) >= 2  # "parisian": "paris" + continuation pieces
    assert word_ids.count(4) >= 2  # "u.s.": punctuation is split off
    assert word_ids == sorted(word_ids)


def test_tokenizer_rejects_unknown_model() -> None:
    with pytest.raises(ConfigError, match=r"tokenizer_model='bpe'.*'wordpiece', 'word'"):
        Tokenizer.train(TEXTS, model="bpe")


# -- loaders ---------------------------------------------------------------------------------------
def test_classification_loaders_read_the_same_samples(tmp_path: Path) -> None:
    datasets = [
        classification(write_rows(tmp_path / f"train{s}", classification_rows()))
        for s in (".csv", ".tsv", ".jsonl", ".parquet")
    ]
    first = datasets[0]
    assert first.preprocessor.labels == ["neg", "neutral", "pos"]
    assert first.model_config_overrides()["id2label"] == {0: "neg", 1: "neutral", 2: "pos"}
    assert [label for _, label in samples(first)] == [2, 0, 0, 1]
    for other in datasets[1:]:
        assert samples(other) == samples(first)
        assert other.preprocessor.labels == first.preprocessor.labels


def test_tagging_loaders_read_the_same_samples(tmp_path: Path) -> None:
    datasets = [tagging(write_rows(tmp_path / f"train{s}", tagging_rows())) for s in (".csv", ".jsonl", ".parquet")]
    first = datasets[0]
    assert first.preprocessor.labels == ["O", "B-LOC", "B-ORG", "B-PER", "I-LOC", "I-ORG"]
    for other in datasets[1:]:
        assert samples(other) == samples(first)


def test_from_hf_reads_rows_and_class_label_names() -> None:
    """`datasets` is not installed: a list of dicts and a stand-in with `.features` play the Dataset."""

    class ClassLabel:
        names = ["negative", "positive"]

    class FakeHFDataset(list):
        features = {"label": ClassLabel()}

    rows = FakeHFDataset([{"text": "good film", "label": 1}, {"text": "bad film", "label": 0}])
    dataset = TextClassificationDataset.from_hf(rows, TextClassificationConfig(vocab_size=50))
    assert dataset.preprocessor.labels == ["negative", "positive"]
    assert [label for _, label in samples(dataset)] == [1, 0]
    plain = SequenceLabelingDataset.from_hf(tagging_rows(), SequenceLabelingConfig(vocab_size=80))
    assert len(plain) == 3 and "Hugging Face" in plain.source


def test_eval_split_shares_the_train_preprocessor(tmp_path: Path) -> None:
    train = classification(write_rows(tmp_path / "train.csv", classification_rows()))
    rows = [{"text": "the hotel was great", "label": "pos"}]
    evaluation = classification(write_rows(tmp_path / "dev.csv", rows), "validation", train.preprocessor)
    assert evaluation.preprocessor is train.preprocessor
    assert samples(evaluation)[0][1] == 2


def test_synthetic_data_is_deterministic_and_splits_are_disjoint() -> None:
    first = build_dataset("synthetic_sentiment", num_samples=300, eval_num_samples=100)
    again = build_dataset("synthetic_sentiment", num_samples=300, eval_num_samples=100)
    assert samples(first) == samples(again)
    validation = build_dataset(
        "synthetic_sentiment",
        split="validation",
        preprocessor=first.preprocessor,
        num_samples=300,
        eval_num_samples=100,
    )
    decode = first.preprocessor.tokenizer.decode
    assert not {decode(ids) for ids, _ in samples(first)} & {decode(ids) for ids, _ in samples(validation)}
    reseeded = build_dataset("synthetic_sentiment", num_samples=300, seed=1)
    assert samples(reseeded) != samples(first)
    ner = build_dataset("synthetic_ner", num_samples=50)
    assert set(ner.preprocessor.labels) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}


# -- alignment and collators -----------------------------------------------------------------------
def test_align_labels_tags_first_pieces_only() -> None:
    assert align_labels([0, 1, 1, 1, 2, 3, 3], [5, 6, 7, 8]) == [5, 6, -100, -100, 7, 8, -100]


def test_tagging_items_carry_one_label_per_word(tmp_path: Path) -> None:
    dataset = tagging(write_rows(tmp_path / "train.jsonl", tagging_rows()))
    ids, word_ids = dataset.preprocessor.encode_words(["Johnathan", "lives"])
    assert word_ids.count(0) >= 2  # an unseen word splits into pieces
    for (_, tags), item in zip(SENTENCES, dataset):
        labels = item["labels"].tolist()
        assert len(labels) == len(item["input_ids"])
        assert [dataset.preprocessor.labels[t] for t in labels if t != IGNORE_INDEX] == tags


def test_token_label_collator_pads_labels_with_ignore_index() -> None:
    items = [
        {"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([1, -100, 0])},
        {"input_ids": torch.tensor([8]), "labels": torch.tensor([2])},
    ]
    batch = TokenLabelCollator()(items)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[1, -100, 0], [2, -100, -100]]


# -- models ----------------------------------------------------------------------------------------
def trained(task: str, tmp_path: Path) -> tuple[Any, Any]:
    """A model briefly trained through its recipe, and the training dataset."""
    from tamrin.recipes import build_trainer

    trainer = build_trainer(load_recipe(task, tiny_overrides(tmp_path)))
    trainer.train()
    return trainer.model, trainer.train_dataset


def test_classifier_predicts_label_names_and_survives_save_load(tmp_path: Path) -> None:
    model, _ = trained("text_classification", tmp_path)
    texts = ["the movie was not good", "honestly the hotel seemed great", "the phone is blue", "zzz qqq"]
    predictions = model.predict(texts)
    assert len(predictions) == 4 and set(predictions) <= {"negative", "neutral", "positive"}
    model.save(tmp_path / "saved")
    assert {"tokenizer.json", "text_preprocessor.json"} <= {p.name for p in (tmp_path / "saved").iterdir()}
    loaded = Model.load(tmp_path / "saved")
    assert loaded.predict(texts) == predictions
    batch = model.preprocess(texts)
    torch.testing.assert_close(loaded(**loaded.preprocess(texts))["logits"], model.eval()(**batch)["logits"])


def test_labeler_predicts_word_tags_and_survives_save_load(tmp_path: Path) -> None:
    model, _ = trained("sequence_labeling", tmp_path)
    texts = ["John lives in Paris", "Acme Corp hired Zanzibarovich yesterday", ["we", "visited", "Tokyo"]]
    predictions = model.predict(texts)
    assert [len(tags) for tags in predictions] == [4, 5, 3]
    assert all(tag in model.config.id2label.values() for tags in predictions for tag in tags)
    model.save(tmp_path / "saved")
    loaded = Model.load(tmp_path / "saved")
    assert loaded.predict(texts) == predictions


def test_labeler_gives_every_word_a_tag_past_max_length() -> None:
    model = build_model("sequence_labeler", vocab_size=50, num_labels=2, id2label={0: "O", 1: "B-PER"})
    model.preprocessor = TextPreprocessor(Tokenizer.train(["a b c"], vocab_size=50), ["O", "B-PER"], max_length=3)
    assert [len(tags) for tags in model.predict(["a b c a b c a"])] == [7]


def test_model_without_preprocessor_cannot_read_text() -> None:
    model = build_model("text_classifier", vocab_size=10, num_labels=2)
    with pytest.raises(ValueError, match="no preprocessor"):
        model.predict(["some text"])


def test_learns_sentiment_beyond_majority_class(tmp_path: Path) -> None:
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith(("dataset.num_samples", "trainer.batch"))]
    overrides += [
        "dataset.num_samples=800",
        "dataset.eval_num_samples=200",
        "trainer.batch_size=32",
        "trainer.num_epochs=3",
        "trainer.learning_rate=0.01",
        "model.hidden_size=32",
    ]
    logs = train_from_recipe(load_recipe("text_classification", overrides))
    assert logs["evaluation.accuracy"] > 0.6  # majority class: about 0.37


# -- recipes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["text_classification", "sequence_labeling"])
def test_recipe_smoke(tmp_path: Path, task: str) -> None:
    recipe = load_recipe(task, tiny_overrides(tmp_path))
    logs = train_from_recipe(recipe)
    assert {"evaluation.loss", "evaluation.accuracy", "evaluation.f1"} <= set(logs)
    model_dir = tmp_path / "run" / FINAL_MODEL_DIR
    assert (model_dir / "tokenizer.json").is_file()
    metrics = evaluate_from_recipe(recipe)  # rebuilds the eval split with the saved model's preprocessor
    assert metrics["accuracy"] == pytest.approx(logs["evaluation.accuracy"])


def test_recipe_model_matches_the_data(tmp_path: Path) -> None:
    train = build_dataset("synthetic_ner", num_samples=40)
    model = build_model_for_data({"name": "sequence_labeler"}, train)
    assert model.config.num_labels == 7 and model.config.vocab_size == train.preprocessor.tokenizer.vocab_size
    assert model.preprocessor is train.preprocessor


# -- bad input -------------------------------------------------------------------------------------
def test_row_missing_a_column_names_row_and_column(tmp_path: Path) -> None:
    rows = classification_rows()
    rows[2] = {"text": rows[2]["text"], "label": ""}
    with pytest.raises(ConfigError, match=r"line 4 has no value for column\(s\) \['label'\]"):
        classification(write_rows(tmp_path / "train.csv", rows))
    broken = [*tagging_rows(), {"tokens": ["a", "b"]}]
    with pytest.raises(ConfigError, match=r"train.jsonl: line 4 has no value for column 'tags'"):
        tagging(write_rows(tmp_path / "train.jsonl", broken))


def test_words_and_tags_must_pair_up(tmp_path: Path) -> None:
    rows = [*tagging_rows(), {"tokens": "a b c", "tags": "O O"}]
    with pytest.raises(ConfigError, match=r"line 5 has 3 words in 'tokens' but 2 tags in 'tags'"):
        tagging(write_rows(tmp_path / "train.csv", rows))


def test_eval_label_outside_the_label_map(tmp_path: Path) -> None:
    train = classification(write_rows(tmp_path / "train.csv", classification_rows()))
    rows = [{"text": "fine", "label": "pos"}, {"text": "meh", "label": "mixed"}]
    with pytest.raises(
        ConfigError,
        match=r"dev.csv: line 3 \(column 'label'\): label 'mixed' is not in the label "
        r"map.*valid labels: \['neg', 'neutral', 'pos'\]",
    ):
        classification(write_rows(tmp_path / "dev.csv", rows), "validation", train.preprocessor)
    tags = tagging(write_rows(tmp_path / "train.jsonl", tagging_rows()))
    with pytest.raises(ConfigError, match=r"line 1 \(column 'tags'\): label 'B-MISC'"):
        tagging(
            write_rows(tmp_path / "dev.jsonl", [{"tokens": ["x"], "tags": ["B-MISC"]}]), "validation", tags.preprocessor
        )


def test_empty_dataset(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no rows"):
        classification(path)
    with pytest.raises(ConfigError, match="holds no rows"):
        SequenceLabelingDataset.from_hf([], SequenceLabelingConfig())


def test_single_label_and_missing_preprocessor(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]
    with pytest.raises(ConfigError, match=r"only the label\(s\) \['x'\]; classification needs at least two"):
        classification(write_rows(tmp_path / "one.csv", rows))
    with pytest.raises(ConfigError, match="needs the training split's preprocessor"):
        classification(write_rows(tmp_path / "dev.csv", classification_rows()), "validation")
    with pytest.raises(ConfigError, match=r"no file for split 'test'.*\['train'\]"):
        build_dataset("text_classification", split="test", files={"train": "train.csv"})


def test_unknown_dataset_and_model_names(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"Unknown dataset name 'text_clasification'.*Did you mean `text_classification`"
    ):
        build_dataset("text_clasification")
    with pytest.raises(ConfigError, match=r"Unknown model name 'text_clasifier'.*Did you mean `text_classifier`"):
        load_recipe("text_classification", ["model.name=text_clasifier"])
    with pytest.raises(ConfigError, match=r"`files.train='train.txt'` has an unreadable suffix"):
        TextClassificationConfig(files={"train": "train.txt"})


def test_a_model_trained_through_the_python_api_saves_the_datas_preprocessor(tmp_path: Path) -> None:
    from tamrin import Trainer, TrainerConfig

    train = build_dataset("synthetic_sentiment", num_samples=64, eval_num_samples=16)
    model = build_model("text_classifier", **train.model_config_overrides())  # no preprocessor of its own
    config = TrainerConfig(
        output_dir=str(tmp_path), task="text_classification", metrics=["accuracy"], batch_size=16, progress="none"
    )
    trainer = Trainer(model=model, config=config, train_dataset=train)
    trainer.train()
    trainer.save(tmp_path / "final")

    assert (tmp_path / "final" / "tokenizer.json").is_file()
    loaded = Model.load(tmp_path / "final")
    assert loaded.predict(["the food was not good"]) == model.eval().predict(["the food was not good"])


def test_unlabelled_hugging_face_rows_and_empty_predict_inputs_are_refused(tmp_path: Path) -> None:
    class ClassLabel:
        names = ["negative", "positive"]

    class FakeHFDataset(list):
        features = {"label": ClassLabel()}

    test_split = FakeHFDataset([{"text": "good film", "label": 1}, {"text": "a film", "label": -1}])
    with pytest.raises(ConfigError, match=r"row 1 has label=-1, outside the ClassLabel ids 0..1"):
        TextClassificationDataset.from_hf(test_split, TextClassificationConfig(vocab_size=50))

    model, _ = trained("text_classification", tmp_path)
    with pytest.raises(ConfigError, match=r"Inputs \[1\] hold no tokens"):
        model.predict(["good", "   "])


def test_an_eval_split_cannot_change_the_training_tokenizer_settings() -> None:
    train = build_dataset("synthetic_sentiment", num_samples=64, eval_num_samples=16, max_length=32)
    with pytest.raises(ConfigError, match=r"sets `max_length=16`, but the training split's preprocessor .* at 32"):
        build_dataset("synthetic_sentiment", split="validation", preprocessor=train.preprocessor, max_length=16)
