"""tamrin.hub against a loopback Hub (tests/hub_server.py) with the real huggingface_hub client."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_server import HubServer, patch_hub_client, set_hub_offline

from tamrin import hub
from tamrin.hub import HubError

TOKEN = "hf_tamrin_writer"
OTHER_TOKEN = "hf_someone_else"
REPO = "tamrin-tests/tiny-model"


def _make_folder(root: Path, weights: bytes = bytes(range(256)) * 64) -> dict[str, bytes]:
    """A saved-model-like folder: binary weights, YAML, a model card and a nested file."""
    files = {
        "model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + weights + b"\x00\xff",
        "model_config.yaml": b"name: tiny\nhidden_size: 8\n",
        "README.md": b"---\nlibrary_name: tamrin\n---\n# tiny\n",
        "preprocessor/tokenizer/vocab.txt": "[PAD]\n[UNK]\nسلام\n".encode(),
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return files


def _read_all(folder: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names}


def test_upload_is_one_commit_and_downloads_byte_equal(hub_server: HubServer, tmp_path: Path) -> None:
    files = _make_folder(tmp_path / "staging")

    sha = hub.upload_folder(tmp_path / "staging", REPO, commit_message="first push", token=TOKEN)

    commits = hub_server.commits(REPO)
    assert [c.message for c in commits] == ["initial commit", "first push"]
    assert commits[-1].sha == sha and len(sha) == 40
    assert set(files) <= set(commits[-1].paths)
    assert [r for r in hub_server.requests if r[1].endswith("/commit/main")] == [
        ("POST", f"/api/models/{REPO}/commit/main")
    ]

    snapshot = hub.download(REPO, token=TOKEN)
    assert snapshot.name == sha  # a snapshot of exactly the pushed commit, in the (empty) test cache
    assert Path(str(tmp_path / "hf_home")) in snapshot.parents
    assert _read_all(snapshot, list(files)) == files


def test_second_push_is_a_new_commit_and_the_first_stays_downloadable(hub_server: HubServer, tmp_path: Path) -> None:
    first = _make_folder(tmp_path / "v1")
    second = _make_folder(tmp_path / "v2", weights=b"\x01" * 5000)

    sha1 = hub.upload_folder(tmp_path / "v1", REPO, token=TOKEN)
    sha2 = hub.upload_folder(tmp_path / "v2", REPO, token=TOKEN)

    assert sha1 != sha2
    assert [c.sha for c in hub_server.commits(REPO)][1:] == [sha1, sha2]
    latest = hub.download(REPO, token=TOKEN)
    assert latest.name == sha2
    assert _read_all(latest, list(second)) == second
    old = hub.download(REPO, revision=sha1, allow_patterns="*.yaml", token=TOKEN)
    assert old.name == sha1 and not (old / "model.safetensors").exists()
    assert (old / "model_config.yaml").read_bytes() == first["model_config.yaml"]
    old_weights = hub.download_file(REPO, "model.safetensors", revision=sha1, token=TOKEN)
    assert old_weights.read_bytes() == first["model.safetensors"]


def test_upload_to_a_branch_leaves_main_alone(hub_server: HubServer, tmp_path: Path) -> None:
    files = _make_folder(tmp_path / "staging")
    main_sha = hub.upload_folder(tmp_path / "staging", REPO, token=TOKEN)
    (tmp_path / "staging" / "model_config.yaml").write_bytes(b"name: tiny\nhidden_size: 16\n")

    dev_sha = hub.upload_folder(tmp_path / "staging", REPO, revision="dev", token=TOKEN)

    assert hub.download_file(REPO, "model_config.yaml", token=TOKEN).read_bytes() == files["model_config.yaml"]
    on_dev = hub.download_file(REPO, "model_config.yaml", revision="dev", token=TOKEN)
    assert on_dev.read_bytes() == b"name: tiny\nhidden_size: 16\n"
    assert hub.download(REPO, token=TOKEN).name == main_sha != dev_sha


def test_private_repo_needs_the_right_token(hub_server: HubServer, tmp_path: Path) -> None:
    files = _make_folder(tmp_path / "staging")
    hub.upload_folder(tmp_path / "staging", REPO, private=True, token=TOKEN)

    with pytest.raises(HubError, match=r"not found, or you have no access.*`hf auth login` or set HF_TOKEN"):
        hub.download(REPO)
    with pytest.raises(HubError, match=r"private repo also needs a token"):
        hub.download_file(REPO, "model_config.yaml", token=OTHER_TOKEN)

    snapshot = hub.download(REPO, token=TOKEN)
    assert _read_all(snapshot, list(files)) == files


def test_token_from_hf_token_env_is_used_and_never_written(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _make_folder(tmp_path / "staging")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.upload_folder(tmp_path / "staging", REPO, private=True)

    snapshot = hub.download(REPO)

    assert (snapshot / "model_config.yaml").is_file()
    cache_files = [p for p in (tmp_path / "hf_home").rglob("*") if p.is_file()]
    assert cache_files and not any(TOKEN.encode() in p.read_bytes() for p in cache_files)


def test_unknown_repo_revision_and_file_are_named(hub_server: HubServer, tmp_path: Path) -> None:
    _make_folder(tmp_path / "staging")
    hub.upload_folder(tmp_path / "staging", REPO, token=TOKEN)

    with pytest.raises(HubError, match=r"Repository 'nobody/missing' on http://127\.0\.0\.1:\d+ not found"):
        hub.download("nobody/missing", token=TOKEN)
    with pytest.raises(HubError, match=r"Revision 'no-such-branch' not found in 'tamrin-tests/tiny-model'"):
        hub.download(REPO, revision="no-such-branch", token=TOKEN)
    with pytest.raises(HubError, match=r"File 'weights\.bin' not found in 'tamrin-tests/tiny-model'"):
        hub.download_file(REPO, "weights.bin", token=TOKEN)
    with pytest.raises(HubError, match=r"'bad\.\.name' is not a valid Hub repo id"):
        hub.download("bad..name")


def test_upload_without_token_or_rights_says_so(hub_server: HubServer, tmp_path: Path) -> None:
    _make_folder(tmp_path / "staging")
    with pytest.raises(HubError, match=r"authentication failed.*`hf auth login` or set HF_TOKEN"):
        hub.upload_folder(tmp_path / "staging", REPO)

    hub.upload_folder(tmp_path / "staging", REPO, token=TOKEN)
    with pytest.raises(HubError, match=r"Permission denied: your token may not upload to 'tamrin-tests/tiny-model'"):
        hub.upload_folder(tmp_path / "staging", REPO, token=OTHER_TOKEN)


def test_invalid_token_is_an_authentication_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_folder(tmp_path / "staging")
    with HubServer(tmp_path / "strict", valid_tokens={TOKEN}) as server:
        patch_hub_client(monkeypatch, server.endpoint, tmp_path / "hf_home")
        with pytest.raises(HubError, match=r"authentication failed.*with a valid token"):
            hub.upload_folder(tmp_path / "staging", REPO, token="hf_revoked")
        assert len(hub.upload_folder(tmp_path / "staging", REPO, token=TOKEN)) == 40


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_say_try_again_later(hub_server: HubServer, tmp_path: Path, status: int) -> None:
    _make_folder(tmp_path / "staging")
    hub.upload_folder(tmp_path / "staging", REPO, token=TOKEN)
    hub_server.fail_with = status

    with pytest.raises(HubError, match=rf"server error \(HTTP {status}\).*Try again later"):
        hub.upload_folder(tmp_path / "staging", REPO, token=TOKEN)
    with pytest.raises(HubError, match=rf"server error \(HTTP {status}\).*Try again later"):
        hub.download(REPO, token=TOKEN)


def test_offline_with_warm_cache_needs_no_server(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _make_folder(tmp_path / "staging")
    hub.upload_folder(tmp_path / "staging", REPO, private=True, token=TOKEN)
    online = hub.download(REPO, token=TOKEN)
    hub_server.stop()
    set_hub_offline(monkeypatch)

    assert hub.download(REPO) == online
    assert _read_all(hub.download(REPO), list(files)) == files
    assert hub.download_file(REPO, "model_config.yaml").read_bytes() == files["model_config.yaml"]


def test_offline_with_cold_cache_says_so(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    set_hub_offline(monkeypatch)
    with pytest.raises(HubError, match=r"Offline mode is on \(HF_HUB_OFFLINE=1\).*not in the local cache"):
        hub.download(REPO, token=TOKEN)
    with pytest.raises(HubError, match=r"Offline mode is on \(HF_HUB_OFFLINE=1\)"):
        hub.download_file(REPO, "model_config.yaml", token=TOKEN)


def test_no_network_with_cold_cache_suggests_offline_mode(hub_server: HubServer, tmp_path: Path) -> None:
    _make_folder(tmp_path / "staging")
    hub.upload_folder(tmp_path / "staging", REPO, token=TOKEN)  # leaves a pooled connection behind
    hub_server.stop()

    with pytest.raises(HubError, match=r"Cannot reach the Hub.*no network.*HF_HUB_OFFLINE=1.*warm cache"):
        hub.download(REPO, token=TOKEN)
    with pytest.raises(HubError, match=r"Cannot reach the Hub at http://127\.0\.0\.1:\d+ to upload to"):
        hub.upload_folder(tmp_path / "staging", REPO, token=TOKEN)


def test_upload_needs_a_folder_with_files(hub_server: HubServer, tmp_path: Path) -> None:
    with pytest.raises(HubError, match=r"is not a folder"):
        hub.upload_folder(tmp_path / "missing", REPO, token=TOKEN)
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    (tmp_path / "empty" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    with pytest.raises(HubError, match=r"holds no files"):
        hub.upload_folder(tmp_path / "empty", REPO, token=TOKEN)
    assert hub_server.requests == []


def test_is_repo_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "best").mkdir(parents=True)
    assert hub.is_repo_id("user/repo")
    assert hub.is_repo_id("gpt2")
    assert not hub.is_repo_id("runs/best")  # an existing local folder wins
    assert not hub.is_repo_id("a/b/c")
    assert not hub.is_repo_id("bad..name")
    assert not hub.is_repo_id("./model")


def test_model_card_has_metadata_tables_snippet_and_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_never_in_cards")
    card = hub.render_model_card(
        repo_id="user/plates",
        task="text_classification",
        model_name="Plate classifier",
        best_metrics={"evaluation.f1": 0.91234, "evaluation.accuracy": 0.95},
        training_settings={"learning_rate": 1e-3, "batch_size": 32, "num_epochs": 3, "optimizer": "adamw"},
        library_version="0.1.0",
    )
    assert card.startswith("---\nlibrary_name: tamrin\ntags:\n- tamrin\n- text_classification\n---\n")
    assert "| Metric | Value |\n| --- | --- |\n| evaluation.f1 | 0.9123 |\n| evaluation.accuracy | 0.9500 |" in card
    assert "| learning_rate | 0.001 |" in card and "| batch_size | 32 |" in card
    assert 'from tamrin.models import Model\n\nmodel = Model.load("user/plates")' in card
    assert "hf_secret_value_never_in_cards" not in card
