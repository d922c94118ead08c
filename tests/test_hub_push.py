"""What a push uploads, replaces and deletes, against the loopback Hub (tests/hub_server.py).

A push deletes nothing it was not asked to (`delete_patterns` / `tamrin push --delete`), never follows
a symlink out of the pushed folder, and leaves a new repo's visibility to the namespace unless asked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from hub_server import HubServer

from tamrin import hub
from tamrin.cli import main
from tamrin.datasets import build_dataset
from tamrin.hub import HubError
from tamrin.models import Model

TOKEN = "hf_tamrin_writer"
REPO = "tamrin-tests/plates"
TINY_PLATES = [
    "dataset.num_samples=64",
    "dataset.eval_num_samples=16",
    "trainer.num_epochs=1",
    "trainer.batch_size=16",
    "trainer.log_steps=2",
    "trainer.progress=none",
    "model.rnn_hidden_size=16",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `tamrin train` run of the default (plates) recipe: recipe.yaml, model/, checkpoints/, logs/."""
    run = tmp_path_factory.mktemp("plates") / "run"
    assert main(["train", *TINY_PLATES, f"trainer.output_dir={run}"]) == 0
    return run


def _folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "model.safetensors").write_bytes(b"\x00weights" * 64)
    (root / "model_config.yaml").write_text("name: tiny\n")
    (root / "sub" / "notes.txt").write_text("inside\n")
    return root


# -- nothing deleted unasked ---------------------------------------------------------------------------
def test_a_push_keeps_the_repos_other_files(hub_server: HubServer, tmp_path: Path) -> None:
    hub_server.put_files(REPO, {"data/train.csv": b"text,label\n", "figures/loss.png": b"\x89PNG..."}, "by hand")

    hub.upload_folder(_folder(tmp_path / "push"), REPO, token=TOKEN)

    paths = set(hub_server.commits(REPO)[-1].paths)
    assert {"data/train.csv", "figures/loss.png", "model.safetensors", "sub/notes.txt"} <= paths
    assert hub_server.read_file(REPO, "data/train.csv") == b"text,label\n"


def test_delete_patterns_delete_only_the_matching_files_the_folder_does_not_hold(
    hub_server: HubServer, tmp_path: Path
) -> None:
    hub_server.put_files(REPO, {"data/train.csv": b"a\n", "sub/old.txt": b"old\n", "keep.md": b"k\n"})

    hub.upload_folder(_folder(tmp_path / "push"), REPO, token=TOKEN, delete_patterns=["sub/*", "*.gitattributes"])

    paths = set(hub_server.commits(REPO)[-1].paths)
    assert "sub/old.txt" not in paths  # matched, and not in the folder: deleted
    assert {"sub/notes.txt", ".gitattributes", "data/train.csv", "keep.md"} <= paths  # uploaded, kept, unmatched


def test_delete_everything_else_makes_the_revision_hold_exactly_the_folder(
    hub_server: HubServer, tmp_path: Path
) -> None:
    hub_server.put_files(REPO, {"data/train.csv": b"a\n"})

    hub.upload_folder(_folder(tmp_path / "push"), REPO, token=TOKEN, delete_patterns="*")

    expected = {".gitattributes", "model.safetensors", "model_config.yaml", "sub/notes.txt"}
    assert set(hub_server.commits(REPO)[-1].paths) == expected


def test_cli_push_keeps_other_files_and_deletes_what_delete_names(
    hub_server: HubServer, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub_server.put_files(REPO, {"data/train.csv": b"a\n", "figures/loss.png": b"png"})

    assert main(["push", str(run_dir), REPO]) == 0
    assert {"data/train.csv", "figures/loss.png", "recipe.yaml"} <= set(hub_server.commits(REPO)[-1].paths)
    assert main(["push", str(run_dir), REPO, "--delete", "figures/*"]) == 0
    paths = set(hub_server.commits(REPO)[-1].paths)
    assert "figures/loss.png" not in paths and "data/train.csv" in paths


# -- symlinks ------------------------------------------------------------------------------------------
def test_a_symlink_out_of_the_folder_is_refused_by_name_before_any_request(
    hub_server: HubServer, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the Hub\n")
    folder = _folder(tmp_path / "push")
    (folder / "sub" / "planted.txt").symlink_to(secret)

    with pytest.raises(HubError, match=r"symlinks that point outside it.*sub/planted\.txt -> .*secret\.txt"):
        hub.upload_folder(folder, REPO, token=TOKEN)
    assert hub_server.requests == []


def test_a_symlink_to_a_file_inside_the_folder_uploads_that_files_content(
    hub_server: HubServer, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "push")
    (folder / "config_link.yaml").symlink_to("model_config.yaml")

    hub.upload_folder(folder, REPO, token=TOKEN)

    assert hub_server.read_file(REPO, "config_link.yaml") == b"name: tiny\n"


def test_folder_links_and_broken_links_are_refused(hub_server: HubServer, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "push")
    (folder / "linked_dir").symlink_to(folder / "sub", target_is_directory=True)
    (folder / "dangling").symlink_to(tmp_path / "nowhere")

    with pytest.raises(HubError, match=r"dangling -> .*nowhere; linked_dir -> .*sub"):
        hub.upload_folder(folder, REPO, token=TOKEN)


def test_cli_push_of_a_checkpoint_with_a_planted_link_uploads_nothing(
    hub_server: HubServer, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY\n")
    (run / "model" / "notes.txt").symlink_to(secret)

    assert main(["push", str(run), REPO]) == 2

    err = capsys.readouterr().err
    assert "notes.txt -> " in err and "never follows" in err and "Traceback" not in err
    assert not any(path.endswith("/commit/main") for _, path in hub_server.requests)


def test_cli_push_refuses_a_symlinked_log_file(
    hub_server: HubServer, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    csv = run / "logs" / "training_logs.csv"
    shutil.move(csv, tmp_path / "elsewhere.csv")
    csv.symlink_to(tmp_path / "elsewhere.csv")

    assert main(["push", str(run), REPO]) == 2
    assert "is a symlink" in capsys.readouterr().err


# -- visibility, branches, pull requests, CLI options ----------------------------------------------------
def test_private_none_leaves_a_new_repos_visibility_to_the_namespace(hub_server: HubServer, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "push")
    hub.upload_folder(folder, "tamrin-tests/default", token=TOKEN)
    hub.upload_folder(folder, "tamrin-tests/public", token=TOKEN, private=False)
    hub.upload_folder(folder, "tamrin-tests/private", token=TOKEN, private=True)

    visibility = [body.get("visibility") for body in hub_server.create_requests]
    assert visibility == [None, "public", "private"]  # None: huggingface_hub sends none, the org's default wins


def test_create_pr_opens_a_pull_request_and_leaves_main_alone(hub_server: HubServer, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "push")
    main_sha = hub.upload_folder(folder, REPO, token=TOKEN)
    (folder / "model_config.yaml").write_text("name: tiny\nhidden_size: 16\n")

    commit = hub.upload_folder(folder, REPO, token=TOKEN, create_pr=True, commit_message="proposal")

    assert commit.pr_url is not None and commit.pr_url.endswith(f"/{REPO}/discussions/1")
    assert commit.pr_revision == "refs/pr/1" and hub_server.refs_of(REPO)["refs/pr/1"] == commit
    assert hub_server.refs_of(REPO)["main"] == main_sha
    proposed = hub.download_file(REPO, "model_config.yaml", revision="refs/pr/1", token=TOKEN)
    assert proposed.read_text() == "name: tiny\nhidden_size: 16\n"


def test_cli_push_options_token_revision_pr_and_what_to_leave_out(hub_server: HubServer, run_dir: Path, capsys) -> None:
    code = main(["push", str(run_dir), REPO, "--token", TOKEN, "--revision", "light", "--no-optimizer", "--no-logs"])

    assert code == 0 and TOKEN not in capsys.readouterr().out
    light = set(hub_server.commits(REPO)[-1].paths)
    assert "model.safetensors" in light and "train/trainer_state.yaml" in light
    assert not {"train/optimizer.pt", "train/rng_state.pt", "logs/training_logs.csv"} & light
    assert hub_server.refs_of(REPO)["light"] == hub_server.commits(REPO)[-1].sha

    assert main(["push", str(run_dir), REPO, "--token", TOKEN, "--create-pr", "-m", "full run"]) == 0
    out = capsys.readouterr().out
    assert f"pull request {hub_server.endpoint}/{REPO}/discussions/1" in out
    assert "train/optimizer.pt" in hub_server.read_file(REPO, "manifest.yaml", revision="refs/pr/1").decode()


# -- pulling by repo id from the CLI -------------------------------------------------------------------
def test_predict_and_evaluate_take_a_repo_id_and_a_revision(
    hub_server: HubServer, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(run_dir), REPO, "--revision", "v1"]) == 0
    images = build_dataset("synthetic_plates", split="test", num_samples=200, eval_num_samples=4)
    paths = [str(p) for p in images.export_images(tmp_path / "images", 2)]
    capsys.readouterr()

    assert main(["predict", REPO, *paths, "--revision", "v1"]) == 0
    from_hub = capsys.readouterr().out
    assert main(["predict", str(run_dir), *paths]) == 0
    assert from_hub == capsys.readouterr().out and from_hub.count("\n") == 2

    assert main(["evaluate", REPO, "--revision", "v1"]) == 0
    from_hub = capsys.readouterr().out
    assert main(["evaluate", str(run_dir)]) == 0
    assert from_hub == capsys.readouterr().out and "cer" in from_hub

    assert main(["predict", REPO, *paths]) == 2  # main holds no model: only the branch v1 was pushed
    assert "No model_config.yaml in" in capsys.readouterr().err


def test_predict_revision_with_a_local_path_is_refused(run_dir: Path, capsys) -> None:
    assert main(["predict", str(run_dir), "x.png", "--revision", "v1"]) == 2
    assert "--revision v1` is for a Hub repo id" in capsys.readouterr().err


def test_model_and_config_push_to_hub_take_revision_token_and_create_pr(hub_server: HubServer, run_dir: Path) -> None:
    model = Model.load(run_dir / "model")

    sha = model.push_to_hub(REPO, revision="dev", token=TOKEN)
    pr = model.config.push_to_hub(REPO, token=TOKEN, create_pr=True, filename="proposed.yaml")

    assert hub_server.refs_of(REPO)["dev"] == sha
    assert hub_server.refs_of(REPO)["refs/pr/1"] == pr
    assert hub_server.read_file(REPO, "proposed.yaml", revision="refs/pr/1").startswith(b"name: crnn")
    assert (
        "proposed.yaml"
        not in [c for c in hub_server.commits(REPO) if c.sha == hub_server.refs_of(REPO)["main"]][0].paths
    )
    loaded = Model.load(REPO, revision="dev")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
