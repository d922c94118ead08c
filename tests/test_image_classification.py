"""Tests for the image_classification task: synthetic shapes, image folders, the CNN, the recipe."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import torch

from tamrin.configs import ConfigError
from tamrin.datasets import ImageFolderDataset, SyntheticShapesDataset, build_dataset
from tamrin.datasets.synthetic.shapes import SHAPES
from tamrin.models import ImageClassifier, ImagePreprocessor, Model, build_model


def shapes(split: str = "train", **overrides) -> SyntheticShapesDataset:
    return build_dataset("synthetic_shapes", split=split, **{"num_samples": 200, "eval_num_samples": 50, **overrides})


def folder(data_dir: Path, split: str = "train", **overrides) -> ImageFolderDataset:
    return build_dataset("image_folder", split=split, data_dir=str(data_dir), **overrides)


def tiny_model(dataset) -> ImageClassifier:
    torch.manual_seed(0)
    return build_model("image_classifier", channels=[4, 8], **dataset.model_config_overrides())


def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shape_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/train and data/validation written from synthetic shapes, with a labels.csv each."""
    root = tmp_path_factory.mktemp("shapes")
    shapes("train").write_folder(root / "train", 24)
    shapes("validation").write_folder(root / "validation", 12)
    return root


# -- synthetic shapes --------------------------------------------------------------------------------
def test_shape_items_follow_the_contract() -> None:
    dataset = shapes()
    item = dataset[3]
    assert item["pixel_values"].shape == (3, 32, 32) and item["pixel_values"].dtype == torch.float32
    assert -1.0 <= item["pixel_values"].min() < item["pixel_values"].max() <= 1.0
    assert item["labels"].dtype == torch.long and item["labels"].shape == ()
    assert dataset.labels == sorted(SHAPES)
    assert dataset.labels[int(item["labels"])] == dataset.sample(3)[1] == dataset.geometry(3)["shape"]
    batch = dataset.data_collator([dataset[0], dataset[1]])
    assert batch["pixel_values"].shape == (2, 3, 32, 32) and batch["labels"].shape == (2,)


def test_shapes_are_deterministic_by_seed_split_and_index() -> None:
    first, again, other = shapes(seed=3), shapes(seed=3), shapes(seed=4)
    for index in (0, 17, 199):
        assert torch.equal(first[index]["pixel_values"], again[index]["pixel_values"])
        assert torch.equal(first[index]["labels"], again[index]["labels"])
    assert not torch.equal(first[0]["pixel_values"], other[0]["pixel_values"])
    small, large = shapes(seed=3, num_samples=10, max_size=5), shapes(seed=3, num_samples=5000)
    assert len(small) == 5 and torch.equal(small[4]["pixel_values"], large[4]["pixel_values"])


def test_shape_splits_are_disjoint_and_all_classes_appear() -> None:
    def keys(dataset):
        return {repr(sorted(dataset.geometry(i).items())) for i in range(len(dataset))}

    train, validation, test = keys(shapes()), keys(shapes("validation")), keys(shapes("test"))
    assert not (train & validation) and not (train & test) and not (validation & test)
    assert {zlib.crc32(key.encode()) % 10 for key in validation} == {8}
    assert {shapes().geometry(i)["shape"] for i in range(200)} == set(SHAPES)


def test_shapes_reject_unknown_shapes_and_splits() -> None:
    with pytest.raises(ConfigError, match=r"`shapes='hexagn'` is not a valid choice.*Did you mean `hexagon`"):
        shapes(shapes=["circle", "hexagn"])
    with pytest.raises(ConfigError, match=r"`split='valid'`.*'validation'"):
        shapes("valid")


# -- image folders -----------------------------------------------------------------------------------
def test_csv_jsonl_parquet_and_subfolders_give_the_same_samples(tmp_path: Path) -> None:
    source = shapes()
    source.write_folder(tmp_path / "csv" / "train", 16)
    source.write_folder(tmp_path / "jsonl" / "train", 16, labels_file="labels.jsonl")
    source.write_folder(tmp_path / "parquet" / "train", 16, labels_file="labels.parquet")
    source.write_folder(tmp_path / "sub" / "train", 16, labels_file=None)

    def samples(dataset: ImageFolderDataset) -> dict[str, tuple[bytes, int]]:
        return {
            path.name: (item["pixel_values"].numpy().tobytes(), int(item["labels"]))
            for path, item in zip(dataset.files, dataset)
        }

    from_csv = folder(tmp_path / "csv")
    assert len(from_csv) == 16 and from_csv.labels == sorted({source.sample(i)[1] for i in range(16)})
    for name in ("jsonl", "parquet", "sub"):
        other = folder(tmp_path / name)
        assert other.labels == from_csv.labels
        assert samples(other) == samples(from_csv), name
    # a PNG round trip is lossless: the folder's items are the generated ones
    assert torch.equal(from_csv[5]["pixel_values"], source[5]["pixel_values"])


def test_the_labels_file_wins_over_class_subfolders(tmp_path: Path) -> None:
    train = tmp_path / "train"
    shapes().write_folder(train, 6, labels_file=None)  # sub-folders per shape
    first = sorted(train.glob("*/*.png"))[0]
    write_csv(train / "labels.csv", f"file,label\n{first.relative_to(train).as_posix()},only\n")
    assert folder(tmp_path).labels == ["only"] and len(folder(tmp_path)) == 1
    assert folder(tmp_path, layout="subfolders").labels != ["only"]


def test_other_splits_share_the_train_label_map(shape_dir: Path) -> None:
    train = folder(shape_dir)
    validation = folder(shape_dir, "validation", preprocessor=train.preprocessor)
    assert validation.preprocessor is train.preprocessor
    assert train.model_config_overrides() == {
        "num_labels": len(train.labels),
        "id2label": dict(enumerate(train.labels)),
        "image_size": 32,
        "in_channels": 3,
    }
    with pytest.raises(ConfigError, match=r"'validation' split .* needs the train split's label map"):
        folder(shape_dir, "validation")
    with pytest.raises(ConfigError, match=r"`image_size=64` \(the preprocessor has 32\)"):
        folder(shape_dir, "validation", preprocessor=train.preprocessor, image_size=64)


def test_split_dirs_and_grayscale(shape_dir: Path) -> None:
    dataset = folder(shape_dir, split_dirs={"train": "validation"}, in_channels=1, image_size=16)
    assert len(dataset) == 12 and dataset[0]["pixel_values"].shape == (1, 16, 16)


# -- bad input -------------------------------------------------------------------------------------
def test_a_row_missing_a_column_names_the_row_and_column(tmp_path: Path) -> None:
    write_csv(tmp_path / "train" / "labels.csv", "file,label\na.png,cat\nb.png,\n")
    with pytest.raises(ConfigError, match=r"labels.csv: line 3 has no value for column\(s\) \['label'\]"):
        folder(tmp_path)
    write_csv(tmp_path / "train" / "labels.csv", "path,label\na.png,cat\n")
    with pytest.raises(ConfigError, match=r"line 2 has no value for column\(s\) \['file'\]"):
        folder(tmp_path)


def test_a_missing_image_file_is_named(shape_dir: Path, tmp_path: Path) -> None:
    rows = (shape_dir / "train" / "labels.csv").read_text().replace("00003.png", "gone.png")
    write_csv(tmp_path / "train" / "labels.csv", rows)
    for image in (shape_dir / "train").glob("*.png"):
        (tmp_path / "train" / image.name).write_bytes(image.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\) .* do not exist: '.*gone.png' \(.*line 5\)"):
        folder(tmp_path)


def test_an_unreadable_image_is_named_when_loaded(tmp_path: Path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "dog").mkdir()
    shapes().sample(0)[0].save(tmp_path / "train" / "cat" / "good.png")
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"not a png")
    dataset = folder(tmp_path)
    assert dataset.labels == ["cat", "dog"] and dataset[0]["labels"] == 0
    with pytest.raises(ValueError, match=r"Cannot read image '.*broken.png'"):
        dataset[1]


def test_a_label_outside_the_label_map_names_label_row_and_valid_labels(shape_dir: Path, tmp_path: Path) -> None:
    train = folder(shape_dir)
    image = (shape_dir / "validation" / "00000.png").as_posix()
    write_csv(tmp_path / "validation" / "labels.csv", f"file,label\n{image},{train.labels[0]}\n{image},dragon\n")
    pattern = rf"labels.csv: line 3: label 'dragon' of the 'validation' split .* Valid labels: \['{train.labels[0]}'"
    with pytest.raises(ConfigError, match=pattern):
        folder(tmp_path, "validation", preprocessor=train.preprocessor)


def test_an_empty_dataset_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train" / "empty_class").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"holds no labels file and no class sub-folders with images"):
        folder(tmp_path)
    write_csv(tmp_path / "train" / "labels.csv", "file,label\n")
    with pytest.raises(ConfigError, match=r"labels.csv' holds no rows"):
        folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"The 'test' split folder .* does not exist"):
        folder(tmp_path, "test")


def test_ambiguous_or_bad_folder_settings_fail_clearly(tmp_path: Path) -> None:
    write_csv(tmp_path / "train" / "labels.csv", "file,label\n")
    write_csv(tmp_path / "train" / "labels.jsonl", "")
    with pytest.raises(ConfigError, match=r"several labels files \['labels.csv', 'labels.jsonl'\]"):
        folder(tmp_path)
    with pytest.raises(ConfigError, match=r"`layout='folders'` is not a valid choice.*'subfolders'"):
        folder(tmp_path, layout="folders")
    with pytest.raises(ConfigError, match=r"`data_dir` must name the folder"):
        build_dataset("image_folder")


# -- the model ---------------------------------------------------------------------------------------
def test_model_config_is_validated() -> None:
    with pytest.raises(ConfigError) as error:
        build_model("image_classifier", num_labels=3, id2label={0: "a", 1: "b"}, in_channels=2, channels=[8, 0])
    message = str(error.value)
    assert "`in_channels=2` is not a valid choice. Valid choices: 1, 3." in message
    assert "`channels=[8, 0]` must be a non-empty list of positive ints" in message
    assert "`id2label` must map exactly the ids 0..2" in message
    with pytest.raises(ConfigError, match=r"`image_size=4` must be >= 8"):
        build_model("image_classifier", image_size=4)


def test_loss_and_post_process() -> None:
    dataset = shapes()
    model = tiny_model(dataset)
    batch = dataset.data_collator([dataset[i] for i in range(4)])
    outputs = model(**batch)
    assert outputs["logits"].shape == (4, 8)
    loss = model.compute_loss(outputs, batch)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(outputs["logits"], batch["labels"]))
    assert all(name in SHAPES for name in model.post_process(outputs))
    with pytest.raises(ValueError, match=r"expects pixel_values of shape \(B, 3, H, W\), got \(4, 1, 32, 32\)"):
        model(pixel_values=batch["pixel_values"][:, :1])


def test_predict_from_image_files_matches_the_training_transform(shape_dir: Path) -> None:
    dataset = folder(shape_dir)
    model = tiny_model(dataset).eval()
    model.preprocessor = dataset.preprocessor
    files = [str(path) for path in dataset.files[:5]]
    assert torch.equal(
        model.preprocess(files)["pixel_values"], torch.stack([dataset[i]["pixel_values"] for i in range(5)])
    )
    with torch.no_grad():
        expected = model.post_process(model(pixel_values=torch.stack([dataset[i]["pixel_values"] for i in range(5)])))
    predictions = model.predict(files)
    assert predictions == expected and set(predictions) <= set(dataset.labels)
    assert model.predict(files[0]) == expected[:1]  # one path is one input, not its characters


def test_save_load_round_trip_keeps_weights_preprocessor_and_predictions(shape_dir: Path, tmp_path: Path) -> None:
    dataset = folder(shape_dir, mean=[0.4, 0.5, 0.6], std=[0.2])
    model = tiny_model(dataset)
    model.preprocessor = dataset.preprocessor
    files = [str(path) for path in dataset.files]
    model.save(tmp_path / "model")
    loaded = Model.load(tmp_path / "model")
    assert isinstance(loaded, ImageClassifier) and loaded.preprocessor == dataset.preprocessor
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**model.preprocess(files))["logits"], loaded(**loaded.preprocess(files))["logits"])
    assert loaded.predict(files) == model.predict(files)


def test_loading_a_preprocessor_that_disagrees_with_the_model_fails(shape_dir: Path, tmp_path: Path) -> None:
    dataset = folder(shape_dir)
    model = tiny_model(dataset)
    model.save(tmp_path)
    ImagePreprocessor(image_size=32, labels=list(reversed(dataset.labels))).save(tmp_path)
    with pytest.raises(ConfigError, match=r"the saved preprocessor disagrees with the model config: `labels="):
        Model.load(tmp_path)


# -- the recipe --------------------------------------------------------------------------------------
def test_recipe_smoke_run_trains_saves_and_predicts(shape_dir: Path, tmp_path: Path) -> None:
    from tamrin.recipes import evaluate_from_recipe, load_recipe, train_from_recipe

    overrides = [
        f"trainer.output_dir={tmp_path / 'run'}",
        "dataset.num_samples=64",
        "dataset.eval_num_samples=32",
        "model.channels=[4,8]",
        "trainer.num_epochs=1",
        "trainer.batch_size=16",
        "trainer.save_steps=4",
        "trainer.log_steps=2",
    ]
    recipe = load_recipe("image_classification", overrides)
    assert recipe.task == "image_classification" and recipe.trainer.metric_for_best_model == "evaluation.accuracy"
    logs = train_from_recipe(recipe)
    assert 0.0 <= logs["evaluation.accuracy"] <= 1.0 and "evaluation.top_k_accuracy" in logs
    model = Model.load(tmp_path / "run" / "model")
    assert model.config.id2label == dict(enumerate(sorted(SHAPES)))
    predictions = model.predict(sorted(str(path) for path in (shape_dir / "validation").glob("*.png")))
    assert len(predictions) == 12 and set(predictions) <= set(SHAPES)
    # `tamrin evaluate` rebuilds the eval split with the saved model's preprocessor
    assert 0.0 <= evaluate_from_recipe(recipe)["accuracy"] <= 1.0


def test_recipe_rejects_a_model_field_the_data_decides(tmp_path: Path) -> None:
    from tamrin.recipes import build_trainer, load_recipe

    recipe = load_recipe("image_classification", [f"trainer.output_dir={tmp_path}", "model.num_labels=5"])
    with pytest.raises(ConfigError, match=r"`model.num_labels=5` but the training data gives 8"):
        build_trainer(recipe)


def test_max_size_on_class_subfolders_keeps_every_class(tmp_path: Path) -> None:
    source = shapes()
    source.write_folder(tmp_path / "sub" / "train", 80, labels_file=None)
    subset = folder(tmp_path / "sub", max_size=16)
    assert len(subset) == 16
    assert {int(item["labels"]) for item in subset} == set(range(len(subset.labels)))  # not just the first classes
