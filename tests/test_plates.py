"""Tests for the Dataset base and registry, the collators and the synthetic plates dataset."""

from __future__ import annotations

import pickle
import time
import zlib
from pathlib import Path

import pytest
import torch

from tamrin.configs import ConfigError
from tamrin.datasets import (
    CTCCollator,
    DatasetConfig,
    ImageCollator,
    SyntheticPlatesConfig,
    SyntheticPlatesDataset,
    build_dataset,
)
from tamrin.datasets.synthetic.plates import PLATE_CHARSET


def plates(split: str = "train", **overrides) -> SyntheticPlatesDataset:
    return build_dataset("synthetic_plates", split=split, **overrides)


# -- items -----------------------------------------------------------------------------------------
def test_item_contract() -> None:
    dataset = plates()
    item = dataset[0]
    assert set(item) == {"pixel_values", "labels"}
    assert item["pixel_values"].shape == (1, 32, 128) and item["pixel_values"].dtype == torch.float32
    assert -1.0 <= item["pixel_values"].min() < item["pixel_values"].max() <= 1.0
    assert item["labels"].dtype == torch.long and item["labels"].min() >= 1
    assert dataset.decode(item["labels"]) == dataset.text(0)
    assert 6 <= len(dataset.text(0)) <= 8 and set(dataset.text(0)) <= set(PLATE_CHARSET)


def test_samples_are_deterministic_by_seed_split_and_index() -> None:
    first, again = plates(seed=3), plates(seed=3)
    for index in (0, 7, 11_999):
        assert torch.equal(first[index]["pixel_values"], again[index]["pixel_values"])
        assert torch.equal(first[index]["labels"], again[index]["labels"])
    assert torch.equal(first[-1]["labels"], again[11_999]["labels"])
    other_seed = plates(seed=4)
    assert not torch.equal(first[0]["pixel_values"], other_seed[0]["pixel_values"])
    assert [first.text(i) for i in range(20)] != [other_seed.text(i) for i in range(20)]
    assert first.text(5) != first.text(6)


def test_a_sample_does_not_depend_on_the_dataset_size_or_max_size() -> None:
    small, large = plates(num_samples=10, max_size=5), plates(num_samples=10_000)
    assert len(small) == 5
    assert torch.equal(small[4]["pixel_values"], large[4]["pixel_values"])
    with pytest.raises(IndexError, match=r"Index 5 is out of range for the 'train' split .*length 5"):
        small[5]


def test_splits_never_share_a_plate() -> None:
    datasets = {split: plates(split) for split in ("train", "validation", "test")}
    texts = {split: {dataset.text(i) for i in range(300)} for split, dataset in datasets.items()}
    assert not texts["train"] & texts["validation"]
    assert not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    assert all(zlib.crc32(t.encode()) % 10 == 8 for t in texts["validation"])
    assert len(plates("validation")) == len(plates("test")) == SyntheticPlatesConfig().eval_num_samples


def test_generation_is_lazy() -> None:
    start = time.perf_counter()
    dataset = plates(num_samples=10**9)
    assert len(dataset) == 10**9
    assert dataset[10**9 - 1]["labels"].numel() >= 6
    assert time.perf_counter() - start < 1.0
    assert len(pickle.dumps(dataset)) < 10_000  # no per-sample state travels to DataLoader workers


def test_formats_decide_the_layout() -> None:
    dataset = plates(formats=["LLD"], charset="0123ABC")
    for index in range(20):
        text = dataset.text(index)
        assert len(text) == 3 and text[:2].isalpha() and text[2].isdigit()


# -- bad input -------------------------------------------------------------------------------------
def test_an_empty_dataset_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"`num_samples=0` is out of range: it must be >= 1"):
        plates(num_samples=0)
    with pytest.raises(ConfigError, match=r"`max_size=0` is out of range"):
        plates(max_size=0)


def test_characters_outside_the_charset_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"entry 'DD-DDD' uses characters \['-'\] that are not in the charset"):
        plates(formats=["DD-DDD"])
    with pytest.raises(ValueError, match=r"Characters \['a', 'q'\] of '12aq' are not in the charset"):
        plates().encode("12aq")


def test_bad_split_name_and_dataset_name() -> None:
    with pytest.raises(ConfigError, match=r"no such split: `split='dev'` .* 'train', 'validation', 'test'"):
        plates("dev")
    with pytest.raises(ConfigError, match="Did you mean `validation`"):
        plates("valid")
    with pytest.raises(ConfigError, match=r"Unknown dataset name 'synthetic_plate'.*Did you mean `synthetic_plates`"):
        build_dataset("synthetic_plate")
    with pytest.raises(ConfigError, match="Unknown key `num_sample`.*Did you mean `num_samples`"):
        plates(num_sample=5)


def test_too_few_distinct_plates_to_split_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"Could not draw a 'validation' plate .* too few distinct plates"):
        plates("validation", formats=["A"], charset="A").text(0)


# -- configs and registry --------------------------------------------------------------------------
def test_dataset_config_load_rebuilds_the_subclass(tmp_path: Path) -> None:
    SyntheticPlatesConfig(num_samples=50, seed=9).save(tmp_path)
    config = DatasetConfig.load(tmp_path)
    assert isinstance(config, SyntheticPlatesConfig) and (config.num_samples, config.seed) == (50, 9)
    dataset = build_dataset(config, split="test", max_size=3)
    assert isinstance(dataset, SyntheticPlatesDataset) and len(dataset) == 3 and dataset.split == "test"


def test_a_dataset_config_file_must_name_a_registered_dataset(tmp_path: Path) -> None:
    (tmp_path / "dataset_config.yaml").write_text("name: os.system\n")
    with pytest.raises(
        ConfigError, match=r"Unknown dataset name 'os.system'\. Registered datasets: .*'synthetic_plates'"
    ):
        DatasetConfig.load(tmp_path)


# -- collators -------------------------------------------------------------------------------------
def test_ctc_collator_pads_labels_with_the_blank() -> None:
    dataset = plates()
    items = [dataset[i] for i in range(8)]
    batch = dataset.data_collator(items)
    lengths = [len(item["labels"]) for item in items]
    assert isinstance(dataset.data_collator, CTCCollator) and len(set(lengths)) > 1
    assert batch["pixel_values"].shape == (8, 1, 32, 128) and batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].shape == (8, max(lengths)) and batch["labels"].dtype == torch.long
    assert batch["label_lengths"].tolist() == lengths
    for row, item in zip(batch["labels"], items):
        assert torch.equal(row[: len(item["labels"])], item["labels"]) and not row[len(item["labels"]) :].any()


def test_ctc_batches_feed_ctc_loss() -> None:
    dataset = plates()
    batch = dataset.data_collator([dataset[i] for i in range(4)])
    log_probs = torch.randn(32, 4, len(PLATE_CHARSET) + 1).log_softmax(-1)
    loss = torch.nn.functional.ctc_loss(log_probs, batch["labels"], torch.full((4,), 32), batch["label_lengths"])
    assert torch.isfinite(loss)


def test_image_collator_stacks_or_pads_labels() -> None:
    image = torch.zeros(3, 4, 4)
    batch = ImageCollator()(
        [
            {"pixel_values": image, "labels": torch.tensor(1), "text": "a", "w": torch.ones(2)},
            {"pixel_values": image, "labels": torch.tensor(0), "text": "b", "w": torch.ones(2)},
        ]
    )
    assert set(batch) == {"pixel_values", "labels", "w"} and batch["labels"].tolist() == [1, 0]
    assert batch["pixel_values"].shape == (2, 3, 4, 4) and batch["w"].shape == (2, 2)
    padded = ImageCollator()(
        [
            {"pixel_values": image, "labels": torch.tensor([5, 6])},
            {"pixel_values": image, "labels": torch.tensor([7])},
        ]
    )
    assert padded["labels"].tolist() == [[5, 6], [7, -100]] and padded["label_lengths"].tolist() == [2, 1]


def test_collators_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="CTCCollator got an empty list of items"):
        CTCCollator()([])
    with pytest.raises(KeyError, match="every item needs a 'labels' entry"):
        CTCCollator()([{"pixel_values": torch.zeros(1, 2, 2)}])
    with pytest.raises(ValueError, match=r"'pixel_values' must have one shape across the batch"):
        ImageCollator()([{"pixel_values": torch.zeros(1, 2, 2)}, {"pixel_values": torch.zeros(1, 2, 3)}])
