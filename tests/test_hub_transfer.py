"""The paths real pushes and pulls take, against the loopback Hub (tests/hub_server.py).

Large files: huggingface_hub asks `preupload` how to send each file; the Hub (and this server) answers
"lfs" for binary and large files, which then go through the git-lfs batch API to signed storage URLs
(multipart for large ones) and come back through a redirect that carries `X-Linked-Etag`/`X-Linked-Size`.
These tests run without Xet: `patch_hub_client` sets HF_HUB_DISABLE_XET, which is what the client does
when `hf_xet` is not installed. With `hf_xet` active, the same pushes would ask `/xet-write-token` and
send chunks to a Xet CAS server instead of the batch API (a path this server does not implement); the
commit payload (`lfsFile` with the sha256) and every tamrin-side behaviour tested here stay the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hub_server import HubServer, HubToken, patch_hub_client, set_hub_offline
from huggingface_hub import HfApi
from torch import nn

from tamrin import Trainer, TrainerConfig, hub
from tamrin.cli import main
from tamrin.hub import HubError

TOKEN = "hf_tamrin_writer"
REPO = "tamrin-tests/big"


class Wide(nn.Module):
    """5.2 M float32 parameters: a 20 MiB model.safetensors."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2048, 2560)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.layer(x).mean(dim=1)
        return {"logits": out, "loss": nn.functional.mse_loss(out, labels)}


class Pairs(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": torch.full((2048,), float(index)), "labels": torch.tensor(float(index))}


@pytest.fixture(scope="module")
def big_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved run (Trainer.save) whose model.safetensors is 20 MiB."""
    output_dir = tmp_path_factory.mktemp("big")
    torch.manual_seed(0)
    config = TrainerConfig(
        output_dir=str(output_dir), task="regression", num_epochs=1, batch_size=2, optimizer="sgd", progress="none"
    )
    trainer = Trainer(model=Wide(), config=config, train_dataset=Pairs())
    trainer.train()
    return trainer.save(output_dir / "model")


def _lfs_puts(server: HubServer) -> list[str]:
    return [path for method, path in server.requests if method in ("PUT", "POST") and "/__storage__/" in path]


def test_a_20_mb_run_goes_through_lfs_and_a_re_push_uploads_nothing(
    hub_server: HubServer, big_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    weights = big_run / "model.safetensors"
    assert weights.stat().st_size > 20 * 1024 * 1024

    assert main(["push", str(big_run), REPO]) == 0

    sizes = dict(hub_server.lfs_uploads)
    assert weights.stat().st_size in sizes.values()  # through the batch API and signed storage, not inline
    assert len([p for p in _lfs_puts(hub_server) if "/part/" in p]) == 3  # 20 MiB in 8 MiB parts: multipart
    commit = hub_server.commits(REPO)[-1]
    assert "model.safetensors" in commit.lfs and "train/trainer_config.yaml" not in commit.lfs
    assert "model.safetensors" not in hub_server.inline_uploads and "manifest.yaml" in hub_server.inline_uploads
    uploads, inline, commits = (
        len(hub_server.lfs_uploads),
        len(hub_server.inline_uploads),
        len(hub_server.commits(REPO)),
    )
    storage_requests = len(_lfs_puts(hub_server))

    assert main(["push", str(big_run), REPO]) == 0  # the same files again

    assert len(hub_server.lfs_uploads) == uploads and len(_lfs_puts(hub_server)) == storage_requests
    assert len(hub_server.inline_uploads) == inline and len(hub_server.commits(REPO)) == commits  # no commit


def test_lfs_files_download_from_storage_without_the_token(hub_server: HubServer, big_run: Path) -> None:
    hub.upload_folder(big_run, REPO, token=TOKEN, private=True)

    path = hub.download_file(REPO, "model.safetensors", token=TOKEN)

    assert path.read_bytes() == (big_run / "model.safetensors").read_bytes()
    assert path.resolve().name == hub_server.commits(REPO)[-1].files["model.safetensors"]  # the blob: X-Linked-Etag
    assert ("GET", f"/__storage__/{path.resolve().name}") in hub_server.requests  # storage answers only token-less


def test_a_failed_lfs_transfer_is_a_hub_error_naming_the_file(hub_server: HubServer, big_run: Path) -> None:
    hub_server.fail_lfs_uploads = 403

    with pytest.raises(
        HubError,
        match=r"Uploading '[\w/.]+\.(safetensors|pt)' to 'tamrin-tests/big' failed during its large-file \(LFS\) transfer \(HTTP 403.*Nothing was committed",
    ):
        hub.upload_folder(big_run, REPO, token=TOKEN)
    assert [c.message for c in hub_server.commits(REPO)] == ["initial commit"]


# -- revisions: branches, tags, pull requests ------------------------------------------------------------
def test_a_tag_is_a_revision(hub_server: HubServer, tmp_path: Path) -> None:
    (tmp_path / "push").mkdir()
    (tmp_path / "push" / "model_config.yaml").write_text("name: v1\n")
    first = hub.upload_folder(tmp_path / "push", REPO, token=TOKEN)
    HfApi(token=TOKEN).create_tag(REPO, tag="v1.0")
    (tmp_path / "push" / "model_config.yaml").write_text("name: v2\n")
    hub.upload_folder(tmp_path / "push", REPO, token=TOKEN)

    assert hub.download_file(REPO, "model_config.yaml", revision="v1.0", token=TOKEN).read_text() == "name: v1\n"
    assert hub.download(REPO, revision="v1.0", token=TOKEN).name == first
    refs = HfApi(token=TOKEN).list_repo_refs(REPO)
    assert [tag.name for tag in refs.tags] == ["v1.0"] and refs.tags[0].target_commit == first


# -- tokens: namespaces and scopes -------------------------------------------------------------------------
@pytest.fixture
def scoped_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tokens = {
        "hf_alice": HubToken("alice", orgs=("team",)),
        "hf_bob": HubToken("bob"),
        "hf_alice_read": HubToken("alice", orgs=("team",), role="read"),
    }
    with HubServer(tmp_path / "scoped", tokens=tokens) as server:
        patch_hub_client(monkeypatch, server.endpoint, tmp_path / "hf_home")
        yield server


def test_a_token_writes_its_users_and_orgs_repos_only(scoped_hub: HubServer, tmp_path: Path) -> None:
    (tmp_path / "push").mkdir()
    (tmp_path / "push" / "model_config.yaml").write_text("name: tiny\n")

    hub.upload_folder(tmp_path / "push", "alice/model", token="hf_alice")
    hub.upload_folder(tmp_path / "push", "team/model", token="hf_alice", private=True)

    with pytest.raises(HubError, match=r"Permission denied: your token may not upload to 'bob/model'.*namespace 'bob'"):
        hub.upload_folder(tmp_path / "push", "bob/model", token="hf_alice")
    with pytest.raises(HubError, match=r"Permission denied: your token may not upload to 'alice/model'"):
        hub.upload_folder(tmp_path / "push", "alice/model", token="hf_bob")
    with pytest.raises(HubError, match=r"not found, or you have no access"):
        hub.download("team/model", token="hf_bob")  # private to the org
    assert hub.download("team/model", token="hf_alice_read").is_dir()


def test_a_read_only_token_cannot_push(scoped_hub: HubServer, tmp_path: Path) -> None:
    (tmp_path / "push").mkdir()
    (tmp_path / "push" / "model_config.yaml").write_text("name: tiny\n")
    hub.upload_folder(tmp_path / "push", "alice/model", token="hf_alice")

    with pytest.raises(HubError, match=r"Permission denied.*write access.*read-only"):
        hub.upload_folder(tmp_path / "push", "alice/model", token="hf_alice_read")
    assert len(scoped_hub.commits("alice/model")) == 2


# -- a race with another writer ----------------------------------------------------------------------------
def test_a_commit_race_commits_nothing_and_says_what_changed(hub_server: HubServer, tmp_path: Path) -> None:
    (tmp_path / "push").mkdir()
    (tmp_path / "push" / "model_config.yaml").write_text("name: tiny\n")
    hub.upload_folder(tmp_path / "push", REPO, token=TOKEN)
    (tmp_path / "push" / "model_config.yaml").write_text("name: tiny\nhidden_size: 8\n")
    hub_server.before_commit = lambda: hub_server.put_files(REPO, {"README.md": b"# edited\n"}, "Edit the card")

    with pytest.raises(
        HubError,
        match=r"moved while this push was being prepared.*1 new commit\(s\) \(\w{7} 'Edit the card'\) that changed README\.md\. Push again",
    ):
        hub.upload_folder(tmp_path / "push", REPO, token=TOKEN)

    assert hub_server.commits(REPO)[-1].message == "Edit the card"
    assert hub_server.read_file(REPO, "model_config.yaml") == b"name: tiny\n"


# -- offline: an incomplete snapshot --------------------------------------------------------------------
def test_offline_resume_after_a_model_only_download_names_the_missing_files(
    hub_server: HubServer, big_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.upload_folder(big_run, REPO, token=TOKEN)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.download(REPO, ignore_patterns=["train/*", "logs/*"])  # what Model.load fetches
    set_hub_offline(monkeypatch)
    config = TrainerConfig(output_dir=str(tmp_path / "out"), task="regression", resume_from_checkpoint=REPO)
    trainer = Trainer(model=Wide(), config=config, train_dataset=Pairs())

    with pytest.raises(
        HubError,
        match=r"cached snapshot of 'tamrin-tests/big' at revision '\w+' .* is incomplete: it lacks \d+ file\(s\) this needs \(.*train/trainer_state\.yaml.*\), and offline mode is on .*`hf download tamrin-tests/big",
    ):
        trainer.train()


def test_with_xet_on_the_client_takes_the_xet_path_instead(
    hub_server: HubServer, big_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What changes with `hf_xet`: the client asks for a Xet write token, not the LFS batch API.

    This server has no Xet CAS behind that route, so the push fails, as a HubError; against the Hub the
    same push would send chunks to Xet storage and then make the same commit.
    """
    pytest.importorskip("hf_xet", reason="hf_xet is not installed: the client always takes the LFS path")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)

    with pytest.raises(HubError, match=r"upload to 'tamrin-tests/big'"):
        hub.upload_folder(big_run, REPO, token=TOKEN)

    assert any("/xet-write-token/" in path for _, path in hub_server.requests)
    assert not any(path.endswith("/info/lfs/objects/batch") for _, path in hub_server.requests)
