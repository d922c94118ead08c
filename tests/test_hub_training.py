"""Pushing trained runs to the Hub and pulling them back, against the loopback Hub (tests/hub_server.py).

The real huggingface_hub client talks to a local server; every test starts with an empty cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from helpers import REGRESSION_SETTINGS, RegressionData, StopAt, make_trainer
from hub_server import HubServer, patch_hub_client, set_hub_offline
from torch import nn

from tamrin import Trainer, TrainerConfig
from tamrin.cli import main
from tamrin.datasets import DatasetConfig
from tamrin.hub import HubError
from tamrin.models import CRNN, Model, ModelConfig, build_model
from tamrin.trainer.checkpoint.publishing import download_pushed_run

TOKEN = "hf_tamrin_writer_secret"
REPO = "tamrin-tests/crnn-plates"
CHARSET = "ABC123"


# -- a tiny OCR run (a tamrin Model: CRNN, image2text) ------------------------------------------------
class ToyPlates(torch.utils.data.Dataset):
    """Random 8x16 'images' with 3-character texts; it has a `config`, as tamrin datasets do."""

    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.pixels = torch.rand(size, 1, 8, 16, generator=generator) * 2 - 1
        self.labels = torch.randint(1, len(CHARSET) + 1, (size, 3), generator=generator)
        self.config = DatasetConfig(name="toy_plates", task="image2text")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        labels = self.labels[index]
        text = "".join(CHARSET[i - 1] for i in labels.tolist())
        return {"pixel_values": self.pixels[index], "labels": labels, "label_lengths": torch.tensor(3), "texts": text}


def crnn() -> CRNN:
    torch.manual_seed(0)
    return build_model("crnn", charset=CHARSET, image_height=8, image_width=16, cnn_channels=[4, 8], rnn_hidden_size=8)


def crnn_config(output_dir: Path, **overrides) -> TrainerConfig:
    settings = dict(
        output_dir=str(output_dir),
        task="image2text",
        metrics=["cer"],
        metric_for_best_model="evaluation.cer",
        num_epochs=2,
        batch_size=4,
        learning_rate=0.01,
        optimizer="adamw",
        lr_scheduler="linear",
        log_steps=2,
        seed=3,
        progress="none",
    )
    return TrainerConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One trained CRNN run (checkpoints at each epoch end, final model in output_dir/model)."""
    output_dir = tmp_path_factory.mktemp("crnn_run")
    trainer = Trainer(
        model=crnn(), config=crnn_config(output_dir), train_dataset=ToyPlates(16, 0), eval_dataset=ToyPlates(8, 1)
    )
    trainer.train()
    trainer.save(output_dir / "model")
    inputs = ToyPlates(5, 2).pixels
    model = trainer.unwrapped_model.eval()
    with torch.inference_mode():
        logits = model(pixel_values=inputs)["logits"]
    return SimpleNamespace(trainer=trainer, output_dir=output_dir, inputs=inputs, logits=logits)


def predict(model: Model, inputs: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(pixel_values=inputs)["logits"]


def assert_same_weights(expected: nn.Module, actual: nn.Module) -> None:
    expected_state, actual_state = expected.state_dict(), actual.state_dict()
    assert expected_state.keys() == actual_state.keys()
    for name, tensor in expected_state.items():
        assert torch.equal(tensor, actual_state[name]), f"{name} differs"


# -- the push ----------------------------------------------------------------------------------------
FULL_PUSH = {
    ".gitattributes",  # the server's initial commit
    "README.md",
    "manifest.yaml",
    "model.safetensors",
    "model_config.yaml",
    "train/trainer_config.yaml",
    "train/trainer_state.yaml",
    "train/dataset_config.yaml",
    "train/optimizer.pt",
    "train/lr_scheduler.pt",
    "train/rng_state.pt",
    "train/callbacks.pt",
    "logs/training_logs.csv",
}


def test_trainer_push_is_one_commit_with_the_whole_run_and_no_token(
    hub_server: HubServer, trained: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    sha = trained.trainer.push_to_hub(REPO, commit_message="first push")

    commits = hub_server.commits(REPO)
    assert [c.message for c in commits] == ["initial commit", "first push"] and commits[-1].sha == sha
    assert [r for r in hub_server.requests if r[0] == "POST" and "/commit/" in r[1]] == [
        ("POST", f"/api/models/{REPO}/commit/main")
    ]
    assert set(commits[-1].paths) == FULL_PUSH
    pushed = {path: hub_server.read_file(REPO, path) for path in commits[-1].paths}
    assert pushed["train/dataset_config.yaml"].startswith(b"name: toy_plates\n")
    state = trained.trainer.state
    card = pushed["README.md"].decode()
    assert card.startswith("---\nlibrary_name: tamrin\ntags:\n- tamrin\n- image2text\n---\n")
    assert f"| evaluation.cer | {state.best_metric:.4f} |" in card
    assert card.index("| evaluation.cer |") < card.index("| evaluation.loss |")
    assert "| model | crnn |" in card and "| learning_rate | 0.01 |" in card and "| batch_size | 4 |" in card
    assert f"| trained steps | {state.global_step} |" in card and "| dataset | toy_plates |" in card
    assert f'model = Model.load("{REPO}")' in card
    out = capsys.readouterr()
    assert not [path for path, content in pushed.items() if TOKEN.encode() in content]
    assert TOKEN not in out.out + out.err


def test_pulled_model_predicts_bitwise_equal_from_an_empty_cache(
    hub_server: HubServer, trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained.trainer.push_to_hub(REPO, token=TOKEN)
    empty_home = tmp_path / "empty_hf_home"
    patch_hub_client(monkeypatch, hub_server.endpoint, empty_home)

    loaded = Model.load(REPO)

    assert isinstance(loaded, CRNN) and not loaded.training
    assert any(empty_home.rglob("model.safetensors"))  # it came through the (new) cache
    assert not any(empty_home.rglob("optimizer.pt")), "loading a model must not download the run's train/ state"
    assert_same_weights(trained.trainer.unwrapped_model, loaded)
    logits = predict(loaded, trained.inputs)
    assert torch.equal(logits, trained.logits)
    assert loaded.post_process({"logits": logits}) == trained.trainer.unwrapped_model.post_process(
        {"logits": trained.logits}
    )
    assert ModelConfig.load(REPO) == trained.trainer.unwrapped_model.config
    assert TrainerConfig.load(REPO, filename="train/trainer_config.yaml") == trained.trainer.config


def _push_twice(trained: SimpleNamespace) -> tuple[str, str, Model]:
    """A trainer push, then a Model.push_to_hub of changed weights; returns both shas and the new model."""
    first = trained.trainer.push_to_hub(REPO, commit_message="trained", token=TOKEN)
    changed = Model.load(trained.output_dir / "model")
    with torch.no_grad():
        changed.head.bias.add_(1.0)
    second = changed.push_to_hub(REPO, commit_message="head bias + 1")
    return first, second, changed


def test_second_push_is_a_second_commit_and_what_load_returns(
    hub_server: HubServer, trained: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    first, second, changed = _push_twice(trained)

    commits = hub_server.commits(REPO)
    assert [(c.sha, c.message) for c in commits[1:]] == [(first, "trained"), (second, "head bias + 1")]
    assert set(commits[-1].paths) == FULL_PUSH  # the run's other files stay in the repo
    latest = Model.load(REPO)
    assert_same_weights(changed, latest)
    assert torch.equal(predict(latest, trained.inputs), predict(changed, trained.inputs))


def test_pull_a_given_revision(
    hub_server: HubServer, trained: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    first, _, _ = _push_twice(trained)  # main has moved on from `first`
    trained.trainer.push_to_hub(REPO, revision="dev")  # a branch of its own

    old = Model.load(REPO, revision=first)
    assert torch.equal(predict(old, trained.inputs), trained.logits)
    assert torch.equal(predict(Model.load(REPO, revision="dev"), trained.inputs), trained.logits)
    assert ModelConfig.load(REPO, revision=first) == trained.trainer.unwrapped_model.config
    with pytest.raises(HubError, match=r"Revision 'v9' not found in 'tamrin-tests/crnn-plates'"):
        Model.load(REPO, revision="v9")


def test_config_push_to_hub_round_trips(
    hub_server: HubServer, trained: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = trained.trainer.config
    with pytest.raises(HubError, match=r"authentication failed.*`hf auth login` or set HF_TOKEN"):
        config.push_to_hub("tamrin-tests/config-only")  # no token anywhere
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    sha = config.push_to_hub("tamrin-tests/config-only", commit_message="config")

    assert hub_server.commits("tamrin-tests/config-only")[-1].sha == sha
    assert TrainerConfig.load("tamrin-tests/config-only") == config


# -- access, errors and offline mode ------------------------------------------------------------------
def test_private_repo_without_a_token_fails_clearly(
    hub_server: HubServer, trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    trained.trainer.push_to_hub(REPO, private=True)
    monkeypatch.delenv("HF_TOKEN")

    no_access = r"'tamrin-tests/crnn-plates' on http://127\.0\.0\.1:\d+ not found, or you have no access.*private repo also needs a token: run `hf auth login` or set HF_TOKEN"
    with pytest.raises(HubError, match=no_access):
        Model.load(REPO)
    with pytest.raises(HubError, match=no_access):
        ModelConfig.load(REPO)
    with pytest.raises(HubError, match=no_access):
        Trainer(model=crnn(), config=crnn_config(tmp_path / "out", init_weights_from=REPO))

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert torch.equal(predict(Model.load(REPO), trained.inputs), trained.logits)


def test_offline_mode_with_a_warm_cache_needs_no_server(
    hub_server: HubServer, trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained.trainer.push_to_hub(REPO, token=TOKEN)
    Model.load(REPO)  # warms the cache
    hub_server.stop()
    set_hub_offline(monkeypatch)

    assert torch.equal(predict(Model.load(REPO), trained.inputs), trained.logits)
    assert ModelConfig.load(REPO) == trained.trainer.unwrapped_model.config
    fine_tuning = Trainer(model=crnn(), config=crnn_config(tmp_path / "out", init_weights_from=REPO))
    assert_same_weights(trained.trainer.unwrapped_model, fine_tuning.unwrapped_model)
    with pytest.raises(HubError, match=r"Offline mode is on \(HF_HUB_OFFLINE=1\).*not in the local cache"):
        Model.load("tamrin-tests/never-downloaded")


# -- resuming from a pushed run (a plain nn.Module, regression) ------------------------------------------
def regression_trainer(output_dir: Path, stop_at: int | None = None, **overrides) -> Trainer:
    """Shuffle, dropout, accumulation 2 and a warmup schedule: what an exact resume must carry over."""
    settings = {
        **REGRESSION_SETTINGS, "metric_for_best_model": "evaluation.mse", "num_epochs": 2,
        "gradient_accumulation_steps": 2, "learning_rate": 0.01, "optimizer": "adamw", "lr_scheduler": "linear",
        "warmup_steps": 1, "log_steps": 2, "seed": 11,
    }  # fmt: skip
    return make_trainer(
        output_dir,
        train=RegressionData(24, seed=0),
        evaluation=RegressionData(8, seed=1),
        callbacks=[StopAt(stop_at)],
        model_options={"hidden": 16, "activation": nn.ReLU, "dropout": 0.3},
        settings=settings,
        **overrides,
    )


def test_resume_from_a_pushed_checkpoint_equals_an_uninterrupted_run(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    reference = regression_trainer(tmp_path / "reference")
    reference.train()
    interrupted = regression_trainer(tmp_path / "interrupted", stop_at=9)  # epoch 2, inside an accumulation window
    interrupted.train()
    interrupted.push_to_hub("tamrin-tests/regression-run")
    assert "train/gradients.pt" in hub_server.commits("tamrin-tests/regression-run")[-1].paths

    resumed = regression_trainer(tmp_path / "elsewhere", resume_from_checkpoint="tamrin-tests/regression-run")
    with pytest.warns(UserWarning, match=r"output_dir: checkpoint .*interrupted.* -> now .*elsewhere"):
        resumed.train()

    assert resumed.state.global_step == reference.state.global_step == 12
    assert_same_weights(reference.unwrapped_model, resumed.unwrapped_model)
    expected, actual = reference.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for index, values in expected.items():
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(actual[index][key])), key

    resumed.push_to_hub("tamrin-tests/regression-run")  # finished: no open accumulation window
    # A push deletes nothing it was not asked to: the first push's gradients stay in the repo, but the new
    # manifest does not list them, so a resume from the repo neither downloads nor loads them.
    assert "train/gradients.pt" in hub_server.commits("tamrin-tests/regression-run")[-1].paths
    manifest = yaml.safe_load(hub_server.read_file("tamrin-tests/regression-run", "manifest.yaml"))
    assert "train/gradients.pt" not in manifest["files"] and "train/optimizer.pt" in manifest["files"]
    snapshot = download_pushed_run("tamrin-tests/regression-run")
    assert (snapshot / "train" / "optimizer.pt").is_file() and not (snapshot / "train" / "gradients.pt").exists()

    resumed.push_to_hub("tamrin-tests/regression-run", delete_patterns="train/gradients.pt")  # asked: it goes
    assert "train/gradients.pt" not in hub_server.commits("tamrin-tests/regression-run")[-1].paths


def test_push_flags_leave_files_out_and_a_partial_push_is_not_resumable(
    hub_server: HubServer, trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    trained.trainer.push_to_hub("tamrin-tests/light", push_optimizer=False, push_logs=False)
    trained.trainer.push_to_hub("tamrin-tests/no-model", push_model=False)

    light = set(hub_server.commits("tamrin-tests/light")[-1].paths)
    resume_only = {"train/optimizer.pt", "train/lr_scheduler.pt", "train/rng_state.pt", "train/callbacks.pt"}
    assert light == FULL_PUSH - resume_only - {"train/gradients.pt", "logs/training_logs.csv"}
    card = hub_server.read_file("tamrin-tests/light", "README.md").decode()
    assert "| evaluation.cer |" in card and "| evaluation.loss |" in card  # read from the logs before they went
    no_model = set(hub_server.commits("tamrin-tests/no-model")[-1].paths)
    assert no_model == FULL_PUSH - {"model.safetensors", "model_config.yaml"}

    for repo, missing in (("tamrin-tests/light", r"train/\w+\.pt"), ("tamrin-tests/no-model", r"model\.safetensors")):
        trainer = Trainer(
            model=crnn(),
            config=crnn_config(tmp_path / repo, resume_from_checkpoint=repo),
            train_dataset=ToyPlates(16, 0),
        )
        with pytest.raises(ValueError, match=rf"Cannot resume from .*{missing} is missing"):
            trainer.train()


# -- `tamrin push` -----------------------------------------------------------------------------------
def test_cli_push_sends_the_final_model_logs_and_card(
    hub_server: HubServer, trained: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    code = main(["push", str(trained.output_dir), REPO, "--private", "--message", "from the CLI"])

    out = capsys.readouterr().out
    commit = hub_server.commits(REPO)[-1]
    assert code == 0 and f"commit {commit.sha}" in out and TOKEN not in out
    assert commit.message == "from the CLI"
    assert set(commit.paths) == FULL_PUSH  # Trainer.save writes the dataset config too
    logs = (trained.output_dir / "logs" / "training_logs.csv").read_bytes()
    assert hub_server.read_file(REPO, "logs/training_logs.csv") == logs
    assert "| evaluation.cer |" in hub_server.read_file(REPO, "README.md").decode()
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match=r"not found, or you have no access"):
        Model.load(REPO)  # --private
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert torch.equal(predict(Model.load(REPO), trained.inputs), trained.logits)


def test_cli_push_without_a_final_model_sends_the_newest_checkpoint(
    hub_server: HubServer, trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = tmp_path / "run"
    shutil.copytree(trained.output_dir, run, ignore=shutil.ignore_patterns("model"))
    newest = sorted((run / "checkpoints").iterdir())[-1]

    assert main(["push", str(run), REPO, "--revision", "checkpoints"]) == 0

    pushed_state = hub_server.read_file(REPO, "train/trainer_state.yaml", revision="checkpoints")
    assert pushed_state == (newest / "train" / "trainer_state.yaml").read_bytes()
    assert (
        hub_server.read_file(REPO, "logs/training_logs.csv", revision="checkpoints")
        == (run / "logs" / "training_logs.csv").read_bytes()
    )


def test_cli_push_errors_exit_2_with_what_to_do(
    hub_server: HubServer, trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["push", str(tmp_path / "empty"), REPO]) == 2
    assert "Nothing to push in" in capsys.readouterr().err

    assert main(["push", str(trained.output_dir), REPO]) == 2  # no token anywhere
    assert "authentication failed" in capsys.readouterr().err

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub_server.fail_with = 503
    assert main(["push", str(trained.output_dir), REPO]) == 2
    err = capsys.readouterr().err
    assert "server error (HTTP 503)" in err and "Try again later" in err and "Traceback" not in err
