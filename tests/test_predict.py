"""`tamrin predict` and `Model.predict`: raw inputs in, readable predictions out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tamrin.cli import main
from tamrin.datasets import build_dataset
from tamrin.models import CRNN, build_model


@pytest.fixture()
def plates(tmp_path: Path):
    return build_dataset("synthetic_plates", split="test", num_samples=200, eval_num_samples=8)


@pytest.fixture()
def saved_crnn(tmp_path: Path) -> tuple[CRNN, Path]:
    torch.manual_seed(0)
    model = build_model("crnn", rnn_hidden_size=16, cnn_channels=[8, 8, 8, 8])
    directory = tmp_path / "run" / "model"
    model.save(directory)
    return model.eval(), directory


def test_exported_plate_images_read_back_as_the_dataset_pixels(plates, tmp_path: Path) -> None:
    model = build_model("crnn")
    paths = plates.export_images(tmp_path / "images", 3)

    assert [path.name.split("_", 1)[1] for path in paths] == [f"{plates.text(i)}.png" for i in range(3)]
    pixels = model.preprocess(paths)["pixel_values"]
    expected = torch.stack([plates[i]["pixel_values"] for i in range(3)])
    assert pixels.shape == expected.shape
    assert (pixels - expected).abs().max() <= 2 / 255 + 1e-6  # only the PNG's 8-bit rounding


def test_predict_command_prints_the_models_predictions(saved_crnn, plates, tmp_path: Path, capsys) -> None:
    model, directory = saved_crnn
    paths = [str(path) for path in plates.export_images(tmp_path / "images", 4)]

    assert main(["predict", str(directory), *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{path}\t{text}" for path, text in zip(paths, model.predict(paths))]

    assert main(["predict", str(directory.parent), paths[0], "--json"]) == 0  # a run's output_dir works too
    assert json.loads(capsys.readouterr().out) == {"input": paths[0], "prediction": model.predict(paths[:1])[0]}


def test_predict_runs_in_eval_mode_without_gradients_and_restores_the_mode(plates, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("crnn", rnn_hidden_size=16, cnn_channels=[8, 8, 8, 8], dropout=0.9)
    paths = plates.export_images(tmp_path / "images", 4)
    batch = model.preprocess(paths)
    with torch.no_grad():
        reference = model.eval()(**batch)["logits"]
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append((module.training, torch.is_grad_enabled())))

    model.train()
    predictions = model.predict(paths)
    assert model.training  # the caller's mode is back
    assert seen == [(False, False)]  # dropout off (0.9 would change the outputs), no autograd graph
    assert predictions == model.post_process({"logits": reference})


def test_unreadable_image_and_missing_model_exit_2_naming_them(saved_crnn, tmp_path: Path, capsys) -> None:
    _, directory = saved_crnn
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")

    assert main(["predict", str(directory), str(bad)]) == 2
    assert f"Cannot read image '{bad}'" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nowhere"), str(bad)]) == 2
    assert "No model_config.yaml in" in capsys.readouterr().err


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares `width` x `height` pixels (a decompression bomb's header)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8  # after the signature: length (4), b"IHDR" (4), then width and height
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 8 + 13]))
    data[ihdr + 8 + 13 : ihdr + 8 + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("side", [12_000, 20_000])  # PIL warns (and decodes) above 89.5M pixels, fails above 2x
def test_a_decompression_bomb_image_exits_2_before_it_is_decoded(saved_crnn, tmp_path: Path, side, capsys) -> None:
    """Issue 15: was PIL's DecompressionBombError traceback (or, under twice the limit, a warning and
    a decode of 144M pixels)."""
    _, directory = saved_crnn
    bomb = _png_declaring(tmp_path / "bomb.png", side, side)
    assert main(["predict", str(directory), str(bomb)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"Refusing image '{bomb}'" in err and "MAX_IMAGE_PIXELS" in err
