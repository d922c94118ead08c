"""Tests for the text_generation task: the text_generator model, its datasets, collator and recipe."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tamrin.configs import ConfigError
from tamrin.datasets import (
    GenerationCollator,
    SyntheticGenerationDataset,
    TextGenerationDataset,
    build_dataset,
)
from tamrin.metrics_handlers import build_metrics_handler
from tamrin.models import CharVocabulary, Model, TextGenerator, build_model
from tamrin.preprocessors.char_vocabulary import IGNORE_INDEX

ROWS = [
    {"prompt": "rev abc:", "target": "c b a"},
    {"prompt": "sort cab:", "target": "a b c"},
    {"prompt": "next ab:", "target": "b c"},
]


def tiny_model(charset: str = " :abcdefghijnorstvx", **overrides) -> TextGenerator:
    torch.manual_seed(0)
    sizes = {"context_length": 24, "embed_dim": 32, "num_layers": 2, "num_heads": 2, "max_new_tokens": 6}
    return build_model("text_generator", charset=charset, **{**sizes, **overrides}).eval()


def synthetic(split: str = "train", **overrides) -> SyntheticGenerationDataset:
    return build_dataset("synthetic_generation", split=split, **overrides)


# -- the model -------------------------------------------------------------------------------------
@pytest.mark.parametrize("padded", [False, True])
def test_a_future_token_does_not_change_earlier_logits(padded: bool) -> None:
    model = tiny_model()
    ids = torch.randint(3, 22, (2, 10))
    mask = torch.ones_like(ids)
    if padded:  # left padding, as the collator lays out prompts
        ids[0, :3], mask[0, :3] = CharVocabulary.PAD, 0
    changed = ids.clone()
    changed[:, 7] = (changed[:, 7] - 2) % 19 + 3
    before = model(ids, attention_mask=mask)["logits"]
    after = model(changed, attention_mask=mask)["logits"]
    assert torch.allclose(before[:, :7], after[:, :7], atol=1e-6)
    assert not torch.allclose(before[:, 7:], after[:, 7:])


def test_left_padding_does_not_change_the_logits_of_real_tokens() -> None:
    model = tiny_model()
    ids = torch.randint(3, 22, (1, 6))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 6, dtype=torch.long)], dim=1)
    plain = model(ids)["logits"]
    assert torch.allclose(model(padded, attention_mask=mask)["logits"][:, 4:], plain, atol=1e-5)


def test_the_loss_counts_only_labelled_positions() -> None:
    model = tiny_model()
    dataset = TextGenerationDataset.from_hf(ROWS, charset=" :abcdefghijnorstvx")
    batch = dataset.data_collator([dataset[0], dataset[1]])
    outputs = model(**batch)
    loss = model.compute_loss(outputs, batch)
    scored = batch["labels"][:, 1:] != IGNORE_INDEX  # position t predicts label t + 1
    assert scored.sum() == 2 * len("c b a") + 2  # the targets and their EOS, nothing of the prompts
    noisy = outputs["logits"].clone()
    noisy[:, :-1][~scored] += torch.randn_like(noisy[:, :-1][~scored]) * 10
    assert torch.allclose(model.compute_loss({"logits": noisy}, batch), loss)
    noisy[:, :-1][scored] += 1.0 + torch.randn_like(noisy[:, :-1][scored])
    assert not torch.allclose(model.compute_loss({"logits": noisy}, batch), loss)
    logits, labels = outputs["logits"][:, :-1][scored], batch["labels"][:, 1:][scored]
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, labels))


def test_generate_is_deterministic_and_stops_at_max_new_tokens() -> None:
    model = tiny_model()
    batch = model.preprocess(["rev abc:", "sort ba:"])
    greedy = model.generate(**batch, max_new_tokens=5)
    assert greedy.shape == (2, 5) and torch.equal(greedy, model.generate(**batch, max_new_tokens=5))
    sampled = [
        model.generate(**batch, max_new_tokens=5, do_sample=True, top_k=4, generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    assert torch.equal(sampled[0], sampled[1])
    assert model.generate(**batch, max_new_tokens=0).shape == (2, 0)


def test_generate_stops_at_eos_and_predict_returns_strings() -> None:
    model = tiny_model()
    with torch.no_grad():  # make EOS the most likely next token everywhere
        model.norm.weight.zero_()
        model.token_embedding.weight[CharVocabulary.EOS] = 1.0
        model.norm.bias.copy_(model.token_embedding.weight[CharVocabulary.EOS])
    generated = model.generate(**model.preprocess(["rev abc:", "a"]), max_new_tokens=5)
    assert generated.tolist() == [[CharVocabulary.EOS], [CharVocabulary.EOS]]
    assert model.predict(["rev abc:", "a"]) == ["", ""]


def test_generate_reads_only_the_prompts_of_a_collated_batch() -> None:
    model = tiny_model()
    dataset = TextGenerationDataset.from_hf(ROWS, charset=" :abcdefghijnorstvx")
    batch = dataset.data_collator([dataset[i] for i in range(3)])
    end = int(batch["prompt_lengths"].max())
    assert (batch["labels"][:, :end] == IGNORE_INDEX).all()  # every prompt ends by column P
    from_batch = model.post_process(
        model.generate(batch["input_ids"], batch["attention_mask"], batch["prompt_lengths"])
    )
    assert from_batch == model.predict([row["prompt"] for row in ROWS])
    assert model.decode_labels(batch) == [row["target"] for row in ROWS]


def test_parameters_are_counted_once_with_the_tied_head() -> None:
    model = tiny_model()
    assert model.head.weight is model.token_embedding.weight
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(unique.values()) == model.num_parameters(trainable_only=True)


def test_save_and_load_give_identical_generations(tmp_path: Path) -> None:
    model = tiny_model(charset="abcdefghij :nortsvx")
    prompts = ["rev abc:", "next hij:", "sort jab:"]
    model.save(tmp_path)
    loaded = Model.load(tmp_path)
    assert isinstance(loaded, TextGenerator) and loaded.preprocessor == model.preprocessor
    assert loaded.head.weight is loaded.token_embedding.weight
    assert loaded.predict(prompts) == model.predict(prompts)
    batch = model.preprocess(prompts)
    assert torch.equal(loaded.generate(**batch), model.generate(**batch))


# -- datasets --------------------------------------------------------------------------------------
def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        pd.DataFrame(rows).to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_files_and_hf_rows_give_the_same_samples(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"train{suffix}", ROWS)
    from_file = build_dataset("text_generation", files={"train": str(path)})
    from_hf = TextGenerationDataset.from_hf(ROWS)
    assert len(from_file) == len(from_hf) == 3
    assert from_file.vocabulary == from_hf.vocabulary == CharVocabulary(" :abcenorstvx")
    for index in range(3):
        assert from_file.pair(index) == (ROWS[index]["prompt"], ROWS[index]["target"])
        for key, value in from_hf[index].items():
            assert torch.equal(from_file[index][key], value)


def test_a_text_column_is_plain_language_modelling(tmp_path: Path) -> None:
    path = _write(tmp_path / "lm.jsonl", [{"text": "hello"}, {"text": "world"}])
    dataset = build_dataset("text_generation", files={"train": str(path)}, text_column="text")
    assert dataset.pair(1) == ("", "world")
    item = dataset[0]
    assert item["labels"].tolist()[0] == IGNORE_INDEX and item["labels"].tolist()[-1] == CharVocabulary.EOS
    assert dataset.model_config_overrides() == {"charset": "dehlorw"}


def test_eval_split_shares_the_train_vocabulary(tmp_path: Path) -> None:
    files = {"train": str(_write(tmp_path / "t.csv", ROWS)), "validation": str(_write(tmp_path / "v.csv", ROWS[:1]))}
    train = build_dataset("text_generation", files=files)
    validation = build_dataset("text_generation", split="validation", files=files, preprocessor=train.preprocessor)
    assert validation.vocabulary is train.vocabulary


def test_synthetic_samples_are_deterministic_correct_and_split_disjoint() -> None:
    train, again = synthetic(num_samples=3000), synthetic(num_samples=3000)
    assert [train.pair(i) for i in range(50)] == [again.pair(i) for i in range(50)]
    assert [train.pair(i) for i in range(50)] != [synthetic(seed=1).pair(i) for i in range(50)]
    for prompt, target in (train.pair(i) for i in range(200)):
        word, letters = prompt.rstrip(":").split(" ")
        expected = {
            "rev": letters[::-1],
            "sort": "".join(sorted(letters)),
            "next": "".join("abcdefghij"[("abcdefghij".index(c) + 1) % 10] for c in letters),
        }[word]
        assert target == " ".join(expected)
    validation = synthetic("validation", preprocessor=train.preprocessor)
    test = synthetic("test", preprocessor=train.preprocessor)
    prompts = [{d.pair(i)[0] for i in range(len(d))} for d in (train, validation, test)]
    assert not (prompts[0] & prompts[1]) and not (prompts[0] & prompts[2]) and not (prompts[1] & prompts[2])


def test_a_copy_baseline_scores_badly_on_synthetic_data() -> None:
    validation = synthetic("validation", eval_num_samples=200)
    handler = build_metrics_handler("text_generation", ["bleu", "rouge2"])
    pairs = [validation.pair(i) for i in range(len(validation))]
    copies = [" ".join(prompt.split(" ")[1].rstrip(":")) for prompt, _ in pairs]
    handler.update(copies, {"texts": [target for _, target in pairs]})
    scores = handler.compute()
    assert scores["bleu"] < 0.15 and scores["rouge2"] < 0.3


def test_the_collator_right_aligns_prompts() -> None:
    vocabulary = CharVocabulary("abc")
    items = [
        TextGenerationDataset.from_hf([{"prompt": p, "target": t}], charset="abc")[0]
        for p, t in [("a", "bbb"), ("abc", "c")]
    ]
    batch = GenerationCollator()(items)
    assert batch["input_ids"].tolist() == [
        [0, 0, 1, 3, 4, 4, 4, 2],
        [1, 3, 4, 5, 5, 2, 0, 0],
    ]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 0, 0]]
    assert batch["prompt_lengths"].tolist() == [2, 4]
    assert vocabulary.decode(batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]) == "bbb"


# -- bad input -------------------------------------------------------------------------------------
def test_a_row_missing_a_column_names_the_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"prompt": "a", "target": "b"}\n{"prompt": "c"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 2 has no value for column\(s\) \['target'\]"):
        build_dataset("text_generation", files={"train": str(path)})
    with pytest.raises(ConfigError, match=r"row 1 has no value for column\(s\) \['answer'\]"):
        rows = [{"question": "q", "answer": "a"}, {"question": "q"}]
        TextGenerationDataset.from_hf(rows, prompt_column="question", target_column="answer")
    numbers = [{"prompt": "12+7=", "target": 19}]
    with pytest.raises(ConfigError, match=r"row 0 .* string in column 'target', got int 19"):
        TextGenerationDataset.from_hf(numbers)


def test_an_empty_dataset_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("prompt,target\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no rows"):
        build_dataset("text_generation", files={"train": str(path)})
    with pytest.raises(ConfigError, match="holds no rows"):
        TextGenerationDataset.from_hf([])
    with pytest.raises(ConfigError, match=r"`files` is empty"):
        build_dataset("text_generation")
    with pytest.raises(ConfigError, match=r"`split='test'` is not a valid choice. Valid choices: 'train'"):
        build_dataset("text_generation", split="test", files={"train": str(path)})


def test_an_unreadable_file_suffix_is_refused_up_front() -> None:
    with pytest.raises(ConfigError, match=r"`files.train='train.xlsx'` has an unreadable suffix; use one of .csv"):
        build_dataset("text_generation", files={"train": "train.xlsx"})


def test_characters_outside_the_vocabulary_are_refused() -> None:
    model = tiny_model(charset="abc :")
    with pytest.raises(ConfigError, match=r"Characters \['X', 'z'\] of 'abXz' are not in the vocabulary 'abc :'"):
        model.predict(["ab", "abXz"])
    train = TextGenerationDataset.from_hf(ROWS)
    with pytest.raises(ConfigError, match=r"row 0 \(counting from 0\), column 'target': characters \['q'\]"):
        TextGenerationDataset.from_hf([{"prompt": "rev ab:", "target": "q"}], preprocessor=train.preprocessor)


def test_prompts_and_sequences_longer_than_the_context_are_refused() -> None:
    model = tiny_model(charset="ab", context_length=8)
    assert len(model.predict(["a" * 7])) == 1  # BOS + 7 characters fill the context exactly
    with pytest.raises(ConfigError, match=r"Prompt 1 has 8 characters; the model reads at most 7"):
        model.predict(["a", "a" * 8])
    with pytest.raises(ValueError, match=r"9 tokens exceeds the model's `context_length=8`"):
        model(torch.ones(1, 9, dtype=torch.long))


def test_misused_generation_inputs_fail_clearly() -> None:
    model = tiny_model()
    with pytest.raises(ConfigError, match=r"`temperature=0.0` is out of range"):
        model.generate(**model.preprocess(["ab"]), do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="evaluate_with_generate: true"):
        model.post_process({"logits": torch.zeros(1, 2, 3)})
    with pytest.raises(ConfigError, match=r"preprocessor must be CharVocabulary"):
        model.preprocessor = CharVocabulary("xyz")
    with pytest.raises(ConfigError, match=r"`embed_dim=30` must be divisible by `num_heads=4`"):
        build_model("text_generator", embed_dim=30, num_heads=4)
    with pytest.raises(ConfigError, match=r"`tasks\[0\]='reverse2'` is not a valid choice.*Did you mean `reverse`"):
        synthetic(tasks=["reverse2"])


# -- the recipe ------------------------------------------------------------------------------------
def test_the_recipe_trains_evaluates_and_saves(tmp_path: Path) -> None:
    from tamrin.recipes import load_recipe, train_from_recipe

    overrides = [
        f"trainer.output_dir={tmp_path}",
        "trainer.progress=none",
        "trainer.batch_size=16",
        "trainer.log_steps=5",
        "dataset.num_samples=160",
        "dataset.eval_num_samples=16",
        "model.embed_dim=32",
        "model.num_layers=1",
        "model.max_new_tokens=8",
    ]
    start = time.perf_counter()
    logs = train_from_recipe(load_recipe("text_generation", overrides))
    assert time.perf_counter() - start < 60  # ~3 s on an idle machine; the bound catches a full-size run
    for name in ("evaluation.bleu", "evaluation.rouge1", "evaluation.rouge2", "evaluation.rougeL", "evaluation.loss"):
        assert 0.0 <= logs[name] <= (1.0 if "loss" not in name else 10.0)
    model = Model.load(tmp_path / "model")
    assert model.preprocessor.charset == synthetic().vocabulary.charset
    assert isinstance(model.predict(["rev abc:"])[0], str)


def test_a_row_longer_than_the_context_fails_when_the_trainer_is_built(tmp_path: Path) -> None:
    from tamrin import Trainer, TrainerConfig

    rows = [*ROWS, {"prompt": "reverse: " + "abc" * 10, "target": "cba" * 10}]
    train = TextGenerationDataset.from_hf(rows)
    model = tiny_model(charset=train.vocabulary.charset, context_length=32)
    config = TrainerConfig(output_dir=str(tmp_path), task="text_generation", batch_size=2, progress="none")
    with pytest.raises(ConfigError, match=r"Row 3 of the 'train' split of text_generation is 71 tokens long"):
        Trainer(model=model, config=config, train_dataset=train)
    assert not (tmp_path / "checkpoints").exists()
