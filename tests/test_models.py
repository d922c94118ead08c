"""Tests for the Model base, the model registry and the CRNN."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

import tamrin
from tamrin.configs import ConfigError
from tamrin.datasets.synthetic.plates import PLATE_CHARSET
from tamrin.models import (
    CRNN,
    MODELS,
    CRNNConfig,
    Model,
    ModelConfig,
    build_model,
    get_model_class,
    register_model,
)
from tamrin.models.crnn import CharsetPreprocessor, ctc_greedy_decode

TINY = {
    "cnn_channels": [4, 8],
    "rnn_hidden_size": 8,
    "image_height": 8,
    "image_width": 16,
    "charset": "0123AB",
}


def tiny_crnn(**overrides) -> CRNN:
    torch.manual_seed(0)
    return build_model("crnn", **{**TINY, **overrides})


@dataclass
class TiedConfig(ModelConfig):
    name: str = "tied_test_model"
    size: int = 4


class TiedModel(Model):
    """A model whose head shares its weight with the embedding (a tied tensor)."""

    def __init__(self, config: TiedConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(10, config.size)
        self.head = nn.Linear(config.size, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.embed(input_ids))}


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread, above all on a machine shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tied_registered():
    register_model("tied_test_model", config_class=TiedConfig)(TiedModel)
    yield TiedModel
    MODELS.remove("tied_test_model")


# -- save / load -----------------------------------------------------------------------------------
def test_round_trip_is_bitwise_identical_and_rebuilds_the_subclass(tmp_path: Path) -> None:
    model = tiny_crnn(dropout=0.3).eval()
    pixels = torch.randn(3, 1, 8, 16)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors", "model_config.yaml"]
    loaded = Model.load(tmp_path / "m")
    assert type(loaded) is CRNN and not loaded.training
    assert isinstance(ModelConfig.load(tmp_path / "m"), CRNNConfig)
    assert loaded.config == model.config and loaded.preprocessor.charset == "0123AB"
    assert torch.equal(loaded(pixel_values=pixels)["logits"], model(pixel_values=pixels)["logits"])


def test_save_keeps_other_files_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "state.yaml").write_text("x: 1")
    tiny_crnn().save(tmp_path)
    tiny_crnn(rnn_hidden_size=4).save(tmp_path)  # overwriting replaces the files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "model_config.yaml", "train"]
    assert Model.load(tmp_path).config.rnn_hidden_size == 4


def test_load_applies_config_overrides_and_rejects_shape_changes(tmp_path: Path) -> None:
    tiny_crnn().save(tmp_path)
    assert Model.load(tmp_path, dropout=0.0).config.dropout == 0.0
    with pytest.raises(ValueError, match=r"shape mismatches: \['rnn.weight_ih_l0"):
        Model.load(tmp_path, rnn_hidden_size=16)


def test_strict_load_names_a_missing_key(tmp_path: Path) -> None:
    tiny_crnn().save(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    del state["head.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys: \['head.bias'\]"):
        Model.load(tmp_path)


def test_strict_load_names_an_unexpected_key(tmp_path: Path) -> None:
    tiny_crnn().save(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected keys: \['extra.weight'\]"):
        Model.load(tmp_path)


def test_tied_weights_are_saved_once_and_restored(tmp_path: Path, tied_registered) -> None:
    model = build_model("tied_test_model")
    model.save(tmp_path)
    assert list(load_file(str(tmp_path / "model.safetensors"))) == ["embed.weight"]
    loaded = Model.load(tmp_path)
    assert type(loaded) is TiedModel and torch.equal(loaded.head.weight, model.embed.weight)
    assert loaded.num_parameters() == 40


def test_load_through_a_subclass_checks_the_kind(tmp_path: Path, tied_registered) -> None:
    tiny_crnn().save(tmp_path)
    assert type(CRNN.load(tmp_path)) is CRNN
    with pytest.raises(ConfigError, match=r"holds a CRNN \(`name='crnn'`\), which is not a TiedModel"):
        TiedModel.load(tmp_path)
    with pytest.raises(ConfigError, match="holds a CRNNConfig"):
        TiedConfig.load(tmp_path)


def test_hub_repo_ids_go_through_the_hub_hook(tmp_path: Path, monkeypatch) -> None:
    tiny_crnn().save(tmp_path / "snapshot")
    calls = []

    def download(repo_id, *, revision=None, ignore_patterns=None):
        calls.append((repo_id, revision))
        return tmp_path / "snapshot"

    fake = types.SimpleNamespace(is_repo_id=lambda name: name.count("/") == 1, download=download)
    monkeypatch.setitem(sys.modules, "tamrin.hub", fake)
    monkeypatch.setattr(tamrin, "hub", fake, raising=False)
    assert isinstance(Model.load("user/plates", revision="v1"), CRNN)
    assert calls == [("user/plates", "v1")]
    with pytest.raises(FileNotFoundError, match="neither a path nor a Hub repo id"):
        Model.load(str(tmp_path / "missing" / "a" / "b"))


# -- registry --------------------------------------------------------------------------------------
def test_unknown_model_name_lists_the_registered_names() -> None:
    with pytest.raises(
        ConfigError, match=r"Unknown model name 'crn'\. Registered models: .*'crnn'.*Did you mean `crnn`"
    ):
        build_model("crn")
    with pytest.raises(ConfigError, match="Unknown model name 'nope'"):
        get_model_class("nope")


def test_a_config_file_cannot_import_a_module(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "evil_module_for_tamrin.py").write_text("raise SystemExit('imported!')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("evil_module_for_tamrin", "evil_module_for_tamrin.Model", "evil_module_for_tamrin:Model"):
        (tmp_path / "model_config.yaml").write_text(f"name: {name}\n")
        with pytest.raises(ConfigError, match="Unknown model name"):
            Model.load(tmp_path)
    (tmp_path / "model_config.yaml").write_text("name: crnn\n_target_: os.system\n")
    with pytest.raises(ConfigError, match="Unknown key `_target_`"):
        ModelConfig.load(tmp_path)
    assert "evil_module_for_tamrin" not in sys.modules


def test_registration_checks_names_and_types() -> None:
    with pytest.raises(ValueError, match=r"already registered to tamrin\.models\.crnn\.CRNN"):
        register_model("crnn", config_class=CRNNConfig)(type("Other", (CRNN,), {}))
    with pytest.raises(ValueError, match="defaults to 'crnn'"):
        register_model("crnn2", config_class=CRNNConfig)
    with pytest.raises(TypeError, match="needs a tamrin Model subclass"):
        register_model("tied_test_model", config_class=TiedConfig)(nn.Linear)


def test_base_model_hooks_explain_what_is_missing(tied_registered) -> None:
    model = build_model("tied_test_model")
    with pytest.raises(NotImplementedError, match="does not implement compute_loss"):
        model.compute_loss({}, {})
    with pytest.raises(NotImplementedError, match="not a generative model"):
        model.generate()
    with pytest.raises(TypeError, match="TiedModel needs a TiedConfig, got CRNNConfig"):
        TiedModel(CRNNConfig())


# -- CRNN ------------------------------------------------------------------------------------------
def test_crnn_config_validation_names_fields() -> None:
    with pytest.raises(ConfigError, match=r"`image_height=20` must be a positive multiple of 16"):
        CRNNConfig(image_height=20)
    with pytest.raises(ConfigError, match=r"repeats characters \['A'\]"):
        CRNNConfig(charset="AAB")
    with pytest.raises(ConfigError, match=r"`rnn_type='lstn'` is not a valid choice.*Did you mean `lstm`"):
        CRNNConfig(rnn_type="lstn")


def test_crnn_defaults_match_the_plates_dataset() -> None:
    from tamrin.datasets.synthetic.plates import SyntheticPlatesConfig

    model, data = CRNNConfig(), SyntheticPlatesConfig()
    assert model.charset == PLATE_CHARSET == data.charset
    assert (model.image_height, model.image_width) == (data.image_height, data.image_width)


def test_crnn_output_shape_and_bad_input() -> None:
    model = tiny_crnn()
    logits = model(pixel_values=torch.zeros(2, 1, 8, 16), labels=torch.ones(2, 3))["logits"]
    assert logits.shape == (2, 4, 7)  # (B, T = width / 4, len(charset) + 1)
    with pytest.raises(ValueError, match=r"expects pixel_values of shape \(B, 1, 8, 16\), got \(2, 1, 8, 15\)"):
        model(pixel_values=torch.zeros(2, 1, 8, 15))


def test_ctc_greedy_decode_collapses_repeats_and_drops_blanks() -> None:
    # classes: 0 blank, 1 '0', 2 '1', ..., 5 'A'; path: - 1 1 - 1 A A - 2 -> "001A1"... as ids [1, 1, 5, 2]
    path = [0, 1, 1, 0, 1, 5, 5, 0, 2, 0]
    logits = torch.nn.functional.one_hot(torch.tensor([path, [0] * 10]), 7).float()
    assert ctc_greedy_decode(logits) == [[1, 1, 5, 2], []]
    assert tiny_crnn().post_process({"logits": logits}) == ["00A1", ""]


def test_preprocessor_encodes_decodes_and_normalises_like_the_dataset() -> None:
    pre = CharsetPreprocessor("0123AB", image_height=8, image_width=16)
    assert pre.encode("A10") == [5, 2, 1] and pre.decode([5, 2, 1, 0, 0]) == "A10"
    with pytest.raises(ValueError, match=r"Characters \['Z'\] of 'AZ' are not in the charset"):
        pre.encode("AZ")
    pixels = pre(Image.new("L", (32, 16), 255))
    assert pixels.shape == (1, 1, 8, 16) and torch.all(pixels == 1.0)
    labels, lengths = torch.tensor([[5, 2, 0], [1, 1, 1]]), torch.tensor([2, 3])
    assert pre.decode_batch(labels, lengths) == ["A1", "000"]
    assert tiny_crnn().decode_labels({"labels": labels, "label_lengths": lengths}) == ["A1", "000"]


def test_crnn_loss_decreases_when_overfitting_a_tiny_batch(one_thread) -> None:
    torch.manual_seed(0)
    model = build_model(
        "crnn",
        cnn_channels=[8, 16],
        rnn_hidden_size=32,
        image_height=8,
        image_width=32,
        charset="0123456789",
        dropout=0.0,
    )
    labels = torch.tensor([[1, 2, 3], [4, 5, 0], [6, 6, 7], [8, 0, 0]])
    batch = {
        "pixel_values": torch.randn(4, 1, 8, 32),
        "labels": labels,
        "label_lengths": torch.tensor([3, 2, 3, 1]),
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = model.compute_loss(model(**batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    assert all(later < earlier for earlier, later in zip(losses[9::10], losses[19::10]))


def test_num_parameters_counts_trainable_only_on_request() -> None:
    model = tiny_crnn()
    total = model.num_parameters()
    model.head.requires_grad_(False)
    assert model.num_parameters(trainable_only=True) == total - sum(p.numel() for p in model.head.parameters())
