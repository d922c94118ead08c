"""`Dataset.load` / `save` / `push_to_hub`: dataset folders and Hub dataset repos, rows kept in Arrow.

References: pandas reads the same files (the rows), the preprocessor's own `encode` (the ids), and
the loopback Hub server (tests/hub_server.py) stands in for the Hub.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from hub_server import HubServer, set_hub_offline

from tamrin.configs import ConfigError
from tamrin.datasets import Dataset, SequenceLabelingDataset, TextClassificationDataset
from tamrin.datasets.tasks.text_classification import TextClassificationConfig
from tamrin.preprocessors import Tokenizer

TOKEN = "hf_test_token_write"
WORDS = ["good", "bad", "fine", "awful", "great", "dull", "bright", "grim"]


def _rows(count: int, seed: int = 0) -> list[dict[str, object]]:
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(WORDS), (count, 5), generator=generator).tolist()
    return [
        {"text": " ".join(WORDS[i] for i in pick), "label": "pos" if pick[0] % 2 else "neg", "confidence": k / count}
        for k, pick in enumerate(picks)
    ]


def _folder(root: Path, splits: dict[str, list[dict[str, object]]], config: str = "") -> Path:
    (root / "data").mkdir(parents=True)
    for split, rows in splits.items():
        pd.DataFrame(rows).to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    (root / "dataset_config.yaml").write_text(
        "name: text_classification\ntask: text_classification\nmax_length: 16\n" + config, encoding="utf-8"
    )
    return root


def _items(dataset: Dataset) -> list[tuple[list[int], int]]:
    return [(item["input_ids"].tolist(), int(item["labels"])) for item in (dataset[i] for i in range(len(dataset)))]


def test_load_reads_every_row_as_pandas_does_and_encodes_it_with_the_preprocessor(tmp_path: Path) -> None:
    rows = _rows(60)
    folder = _folder(tmp_path / "reviews", {"train": rows, "validation": rows[:7]})

    train = Dataset.load(folder, split="train")
    val = Dataset.load(folder, split="validation", preprocessor=train.preprocessor)

    assert isinstance(train, TextClassificationDataset) and len(train) == 60 and len(val) == 7
    frame = pd.read_parquet(folder / "data" / "train-00000-of-00001.parquet")
    pre = train.preprocessor
    expected = [(pre.encode(text), pre.label_id(label, "")) for text, label in zip(frame.text, frame.label)]
    assert _items(train) == expected
    assert _items(val) == expected[:7]
    # the same rows given as a Python list (the pre-Arrow path) give the same items
    config = TextClassificationConfig(max_length=16)
    listed = TextClassificationDataset(config, rows=rows, preprocessor=pre)
    assert _items(listed) == expected
    # extra columns stay available (e.g. to a curriculum) and never reach the model
    assert train.column("confidence").tolist() == frame.confidence.tolist()
    assert set(train[0]) == {"input_ids", "labels"}
    with pytest.raises(
        ConfigError, match=r"Column 'loss' is not in .*\(its columns: \['confidence', 'label', 'text'\]\)"
    ):
        train.column("loss")


def test_rows_stay_on_disk_in_arrow_and_a_second_load_reuses_the_cached_encoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "reviews", {"train": _rows(40)})
    first = Dataset.load(folder)
    assert first.table.cache_files and first.encoded.cache_files  # memory-mapped files, not Python rows

    calls: list[int] = []
    original = TextClassificationDataset.encode_row
    monkeypatch.setattr(
        TextClassificationDataset, "encode_row", lambda self, row, where: calls.append(1) or original(self, row, where)
    )
    trained: list[int] = []
    train_tokenizer = Tokenizer.train
    monkeypatch.setattr(Tokenizer, "train", lambda *a, **k: trained.append(1) or train_tokenizer(*a, **k))
    second = Dataset.load(folder)  # the tokenizer, the label map and the encoded rows all come from the cache
    assert calls == [] and trained == [] and _items(second) == _items(first)
    assert second.preprocessor.tokenizer == first.preprocessor.tokenizer
    changed = Dataset.load(folder, max_length=3)  # other settings: encoded anew
    assert len(calls) == 40 and all(len(ids) <= 3 for ids, _ in _items(changed))


def _resident_bytes(path: str) -> int:
    """The bytes of `path` this process has in RAM through its memory mappings (Rss in /proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
            inside = len(fields) >= 6 and fields[5] == path
        elif inside and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="resident pages are read from Linux's /proc")
def test_a_cached_load_keeps_the_mapped_files_out_of_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening an Arrow file touches each record batch's header, and the kernel maps the pages around
    each touch: with `datasets`' 1,000-row batches a load made the whole files resident (the 1e7-row
    run's +1.1 GB). With few, large batches, and the missing-value check reading only offsets, a
    cached load keeps most of both files (raw rows and encoded ids) on disk."""
    import gc

    from tamrin.datasets import tables

    monkeypatch.setattr(tables, "WRITE_BATCH", 20_000)  # the 100,000 of real runs, scaled to this test's data
    rows = _rows(40_000)
    for row in rows:  # reviews of 20 words, so that the text is most of the raw file, as in a real corpus
        row["text"] = " ".join([str(row["text"])] * 4)
    folder = _folder(tmp_path / "reviews", {"train": rows})
    first = Dataset.load(folder)
    files = [first.table.cache_files[0]["filename"], first.encoded.cache_files[0]["filename"]]
    del first
    gc.collect()  # its mappings are gone: what is resident below is the second load's

    second = Dataset.load(folder)
    second[0], second[len(second) - 1]  # noqa: B018 (reads map the pages they need, nothing more)

    assert [second.table.cache_files[0]["filename"], second.encoded.cache_files[0]["filename"]] == files
    for path in files:
        size = Path(path).stat().st_size
        assert size > 1_000_000  # the files are big enough for pages to tell
        assert _resident_bytes(path) < 0.3 * size, (Path(path).name, _resident_bytes(path), size)


def test_csv_cells_stay_text_and_only_an_empty_cell_is_missing(tmp_path: Path) -> None:
    folder = tmp_path / "codes"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.csv").write_text("text,label\nNA null,007\nnan x,7\nNA x,007\n", encoding="utf-8")
    (folder / "dataset_config.yaml").write_text("name: text_classification\nlowercase: false\n", encoding="utf-8")

    train = Dataset.load(folder)

    assert train.preprocessor.labels == ["007", "7"]  # not the number 7 twice
    assert train.preprocessor.tokenizer.decode(train[0]["input_ids"].tolist()) == "NA null"
    (folder / "data" / "train.csv").write_text("text,label\nfine,a\n,b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"train.csv: line 3 has no value for column\(s\) \['text'\]"):
        Dataset.load(folder)


def test_shards_of_a_split_are_read_in_order(tmp_path: Path) -> None:
    rows = _rows(30)
    folder = _folder(tmp_path / "sharded", {})
    pd.DataFrame(rows[:12]).to_parquet(folder / "data" / "train-00000-of-00002.parquet")
    pd.DataFrame(rows[12:]).to_parquet(folder / "data" / "train-00001-of-00002.parquet")

    train = Dataset.load(folder)

    assert train.column("text").tolist() == [row["text"] for row in rows]


def test_save_then_load_round_trips_every_split_into_one_folder(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "source", {"train": _rows(50), "test": _rows(9, seed=1)})
    train = Dataset.load(folder, max_size=20)
    test = Dataset.load(folder, split="test", preprocessor=train.preprocessor)

    train.save(tmp_path / "saved")
    test.save(tmp_path / "saved")

    again = Dataset.load(tmp_path / "saved")
    assert len(again) == 20 and again.preprocessor.labels == train.preprocessor.labels
    assert again.column("text").tolist() == train.column("text").tolist()
    assert _items(Dataset.load(tmp_path / "saved", split="test", preprocessor=train.preprocessor)) == _items(test)
    assert sorted(p.name for p in (tmp_path / "saved" / "data").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
    ]


def test_preprocessor_may_be_a_folder_as_in_hezars_example(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "reviews", {"train": _rows(30)})
    trained = Dataset.load(folder)
    trained.preprocessor.save(tmp_path / "model")

    # Hezar: Dataset.load(path, split="train", preprocessor=base_model_path, max_length=8)
    loaded = Dataset.load(folder, split="train", preprocessor=str(tmp_path / "model"), max_length=16)

    assert loaded.preprocessor.tokenizer == trained.preprocessor.tokenizer
    assert _items(loaded) == _items(trained)


def test_bad_loads_say_what_is_wrong(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "reviews", {"train": _rows(10)})
    with pytest.raises(ConfigError, match=r"no data for split 'test'.*'data/test-\*'"):
        Dataset.load(folder, split="test")
    with pytest.raises(ConfigError, match=r"names dataset 'text_classification' .*not a SequenceLabelingDataset"):
        SequenceLabelingDataset.load(folder)
    with pytest.raises(FileNotFoundError, match="No dataset folder at './no/such/../folder'"):
        Dataset.load("./no/such/../folder")
    with pytest.raises(ConfigError, match="is for a Hub repo id"):
        Dataset.load(folder, revision="v1")
    with pytest.raises(NotImplementedError, match="reads no data files"):
        from tamrin.datasets import build_dataset

        build_dataset("synthetic_sentiment", num_samples=20).save(tmp_path / "x")


def test_push_then_load_by_repo_id_at_a_revision_and_offline(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = "tamrin-tests/reviews"
    folder = _folder(tmp_path / "reviews", {"train": _rows(25), "validation": _rows(5, seed=3)})
    train = Dataset.load(folder)
    validation = Dataset.load(folder, split="validation", preprocessor=train.preprocessor)

    first = train.push_to_hub(repo, token=TOKEN)
    second = validation.push_to_hub(repo, token=TOKEN)

    assert [c.message for c in hub_server.commits(repo, repo_type="dataset")][1:] == [
        "Upload the train split with tamrin",
        "Upload the validation split with tamrin",
    ]
    assert set(hub_server.commits(repo, repo_type="dataset")[-1].paths) >= {
        "dataset_config.yaml",
        "data/train-00000-of-00001.parquet",
        "data/validation-00000-of-00001.parquet",
    }
    pulled = Dataset.load(repo, split="validation", preprocessor=train.preprocessor)
    assert _items(pulled) == _items(validation)
    with pytest.raises(ConfigError, match="no data for split 'validation'"):
        Dataset.load(repo, split="validation", revision=first)  # before the second push
    assert _items(Dataset.load(repo, revision=first)) == _items(train)
    assert second != first

    set_hub_offline(monkeypatch)  # a snapshot in the cache loads without the Hub
    assert _items(Dataset.load(repo, split="validation", preprocessor=train.preprocessor)) == _items(validation)


def _plates_folder(root: Path, count: int) -> tuple[Path, list[str]]:
    """A Hezar-style OCR dataset folder: data/train.csv (image_path, label) and the PNGs beside it."""
    from tamrin.datasets import build_dataset

    plates = build_dataset("synthetic_plates", num_samples=count)
    paths = plates.export_images(root / "data" / "images", count)
    texts = [plates.text(i) for i in range(count)]
    frame = pd.DataFrame({"image_path": [f"images/{p.name}" for p in paths], "label": texts})
    frame.to_csv(root / "data" / "train.csv", index=False)
    (root / "dataset_config.yaml").write_text("name: ocr\ntask: image2text\n", encoding="utf-8")
    return root, texts


def test_hezars_license_plate_line_runs_with_a_local_folder(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from tamrin import Trainer, TrainerConfig
    from tamrin.models import CRNN, CRNNConfig

    folder, texts = _plates_folder(tmp_path / "persian-license-plate-v1", 12)
    base_model_path = tmp_path / "crnn"
    CRNN(CRNNConfig()).save(base_model_path)

    # examples/train/train_ocr_alpr.py of Hezar, with a local folder in place of the Hub id:
    with pytest.warns(UserWarning, match=r"rows left out \(as Hezar does\).*max_length=7"):
        train_dataset = Dataset.load(folder, split="train", preprocessor=str(base_model_path), max_length=7)

    kept = [i for i, text in enumerate(texts) if len(text) <= 7]
    assert train_dataset.dropped == [i for i in range(len(texts)) if i not in kept] != []
    assert len(train_dataset) == len(kept)
    first = train_dataset[0]
    png = np.asarray(Image.open(sorted((folder / "data" / "images").iterdir())[kept[0]]), dtype=np.float32)
    assert torch.equal(first["pixel_values"][0], torch.from_numpy((png / 255.0 - 0.5) / 0.5))  # 128x32: no resize
    charset = CRNNConfig().charset
    assert first["labels"].tolist() == [charset.index(c) + 1 for c in texts[kept[0]]]

    model = CRNN(CRNNConfig(**train_dataset.model_config_overrides()))
    config = TrainerConfig(
        output_dir=str(tmp_path / "run"), task="image2text", batch_size=4, max_steps=2, metrics=["cer"]
    )
    trainer = Trainer(model=model, config=config, train_dataset=train_dataset, eval_dataset=train_dataset)
    logs = trainer.train()
    metrics = trainer.evaluate()
    assert np.isfinite(logs["train.loss"]) and 0.0 <= metrics["cer"] <= 1.5, (logs, metrics)


def test_a_recipe_reads_a_dataset_folder_by_path(tmp_path: Path) -> None:
    from tamrin.recipes import evaluate_from_recipe, load_recipe, train_from_recipe

    folder = _folder(tmp_path / "reviews", {"train": _rows(64), "validation": _rows(16, seed=2)})
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(
        "task: text_classification\n"
        "model: {name: text_classifier, embedding_dim: 8, hidden_size: 8}\n"
        f"dataset: {{path: {folder}}}\n"
        "eval_dataset: {split: validation}\n"
        f"trainer: {{output_dir: {tmp_path / 'run'}, batch_size: 16, num_epochs: 1, metrics: [accuracy]}}\n",
        encoding="utf-8",
    )

    recipe = load_recipe(str(recipe_file))
    logs = train_from_recipe(recipe)
    assert evaluate_from_recipe(recipe)["accuracy"] == pytest.approx(logs["evaluation.accuracy"])
    with pytest.raises(ConfigError, match=r"takes `path` .* or `name` .*not both"):
        load_recipe(str(recipe_file), ["dataset.name=synthetic_sentiment"])


def test_an_image_folder_loads_from_its_folder_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    from tamrin.datasets import ImageFolderConfig, ImageFolderDataset

    folder = tmp_path / "pets"
    for split, count in (("train", 3), ("validation", 1)):
        for label, red in (("cat", 200), ("dog", 20)):
            (folder / "images" / split / label).mkdir(parents=True)
            for index in range(count):
                Image.new("RGB", (8, 8), (red, index * 40, 0)).save(folder / "images" / split / label / f"{index}.png")
    (folder / "dataset_config.yaml").write_text("name: image_folder\ntask: image_classification\ndata_dir: images\n")
    monkeypatch.chdir(tmp_path)  # data_dir is relative to the dataset folder, not to the working directory
    train = Dataset.load(folder)
    val = Dataset.load("pets", split="validation", preprocessor=train.preprocessor)
    direct = ImageFolderDataset(ImageFolderConfig(data_dir=str(folder / "images")))
    assert len(train) == 6 and len(val) == 2 and train.labels == ["cat", "dog"]
    for index in range(len(train)):
        assert torch.equal(train[index]["pixel_values"], direct[index]["pixel_values"])
        assert train[index]["labels"] == direct[index]["labels"]
    assert [int(val[i]["labels"]) for i in range(2)] == [0, 1]
