"""The pull paths against a Hub server nobody here wrote: olah, a self-hosted Hugging Face mirror.

olah (PyPI, a dev dependency) serves local git repositories as Hub repos, read-only and offline:
``[basic] mirrors-path = [DIR]``, ``[accessibility] offline = true`` and a git repo at
``DIR/models/<org>/<name>``. One olah process serves this whole module (it takes seconds to start);
each test gets an empty huggingface_hub cache pointed at it, as tests/hub_server.py's fixture does.

Where olah differs from the Hub: it answers a missing revision with 401 ``RepoNotFound`` (the Hub:
404 ``RevisionNotFound``) and a missing file with 401 ``RepoNotFound`` to HEAD and 500 to GET (the
Hub: 404 ``EntryNotFound``). tamrin then asks once more (does the repo answer at main? does the
revision list the file?) and says what the Hub's answer would have made it say: "Revision ... not
found" and "File ... not found". tests/test_hub.py checks the same messages for the Hub's own answers.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hub_server import patch_hub_client, set_hub_offline

from tamrin import Trainer, TrainerConfig
from tamrin.datasets import DatasetConfig
from tamrin.hub import HubError
from tamrin.models import Model, ModelConfig, build_model
from tamrin.trainer.callbacks import Callback

RUN = "tamrin-tests/crnn"
INTERRUPTED = "tamrin-tests/interrupted"
CHARSET = "ABC123"


class ToyPlates(torch.utils.data.Dataset):
    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.pixels = torch.rand(size, 1, 8, 16, generator=generator) * 2 - 1
        self.labels = torch.randint(1, len(CHARSET) + 1, (size, 3), generator=generator)
        self.config = DatasetConfig(name="toy_plates", task="image2text")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        labels = self.labels[index]
        return {"pixel_values": self.pixels[index], "labels": labels, "label_lengths": torch.tensor(3)}


class StopAt(Callback):
    def __init__(self, step: int | None) -> None:
        self.step = step

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.state.global_step == self.step:
            trainer.control.should_stop = True


def make_trainer(output_dir: Path, stop_at: int | None = None, **overrides) -> Trainer:
    torch.manual_seed(0)
    model = build_model("crnn", charset=CHARSET, image_height=8, image_width=16, cnn_channels=[4, 8], rnn_hidden_size=8)
    settings = dict(output_dir=str(output_dir), task="image2text", num_epochs=2, batch_size=4, learning_rate=0.01)
    settings.update(optimizer="adamw", lr_scheduler="linear", seed=3, progress="none", **overrides)
    config = TrainerConfig(**settings)
    return Trainer(model=model, config=config, train_dataset=ToyPlates(16, 0), callbacks=[StopAt(stop_at)])


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=tamrin", "-c", "user.email=tests@tamrin", "-c", "init.defaultBranch=main"]
    return subprocess.run([*command, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_olah(root: Path, mirrors: Path) -> tuple[subprocess.Popen, str]:
    """Start olah on 127.0.0.1 serving `mirrors`; skip the module if it cannot start here."""
    pytest.importorskip("olah", reason="olah (a dev dependency) is not installed")
    port = free_port()
    config = root / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{root / "olah_cache"}"\n'
        f'mirrors-path = ["{mirrors}"]\n\n[accessibility]\noffline = true\n'
    )
    log = (root / "olah.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", "from olah.server import cli; cli()", "-c", str(config), "--log-path", str(root)],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return process, endpoint
        time.sleep(0.2)
    process.kill()
    process.wait()
    pytest.skip(f"olah did not start on {endpoint}: {(root / 'olah.log').read_text()[-800:]}")


@pytest.fixture(scope="module")
def olah(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """olah serving two git repos: a trained run (main, tag v1.0, branch dev) and an interrupted run."""
    root = tmp_path_factory.mktemp("olah")
    mirrors = root / "mirrors"
    reference = make_trainer(root / "reference")
    reference.train()
    final = reference.save(root / "reference" / "final")
    interrupted = make_trainer(root / "interrupted", stop_at=3)
    interrupted.train()
    saved = interrupted.save(root / "interrupted" / "saved")  # now: the save holds the process's RNG state

    repo = mirrors / "models" / RUN
    shutil.copytree(final, repo)
    git(repo, "init", "-q")
    trained_sha = commit_all(repo, "trained")
    git(repo, "tag", "v1.0")
    git(repo, "branch", "dev")
    changed = Model.load(final)
    with torch.no_grad():
        changed.head.bias.add_(1.0)
    changed.save(root / "changed")
    shutil.copyfile(root / "changed" / "model.safetensors", repo / "model.safetensors")
    commit_all(repo, "head bias + 1")

    shutil.copytree(saved, mirrors / "models" / INTERRUPTED)
    git(mirrors / "models" / INTERRUPTED, "init", "-q")
    commit_all(mirrors / "models" / INTERRUPTED, "interrupted at step 3")

    process, endpoint = start_olah(root, mirrors)
    try:
        yield SimpleNamespace(
            endpoint=endpoint,
            reference=reference,
            changed=changed,
            trained_sha=trained_sha,
            inputs=ToyPlates(5, 2).pixels,
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def olah_hub(olah: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The client pointed at olah, with an empty cache in tmp_path / "hf_home"."""
    from huggingface_hub.utils import close_session

    patch_hub_client(monkeypatch, olah.endpoint, tmp_path / "hf_home")
    yield olah
    close_session()


def logits(model: Model, inputs: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(pixel_values=inputs)["logits"]


def same_weights(expected: torch.nn.Module, actual: torch.nn.Module) -> bool:
    left, right = expected.state_dict(), actual.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


# -- pulls -----------------------------------------------------------------------------------------------
def test_model_load_at_main_a_branch_a_tag_and_a_sha(olah_hub: SimpleNamespace) -> None:
    trained = olah_hub.reference.unwrapped_model

    assert same_weights(olah_hub.changed, Model.load(RUN))
    for revision in ("dev", "v1.0", olah_hub.trained_sha):
        loaded = Model.load(RUN, revision=revision)
        assert torch.equal(logits(loaded, olah_hub.inputs), logits(trained, olah_hub.inputs)), revision


def test_configs_load_from_the_mirror(olah_hub: SimpleNamespace) -> None:
    assert ModelConfig.load(RUN) == olah_hub.reference.unwrapped_model.config
    trainer_config = TrainerConfig.load(RUN, filename="train/trainer_config.yaml", revision="v1.0")
    assert trainer_config == olah_hub.reference.config


def test_init_weights_from_the_mirror(olah_hub: SimpleNamespace, tmp_path: Path) -> None:
    fine_tuning = make_trainer(tmp_path / "out", init_weights_from=RUN)
    assert same_weights(olah_hub.changed, fine_tuning.unwrapped_model)


def test_resume_from_the_mirror_equals_the_uninterrupted_run(olah_hub: SimpleNamespace, tmp_path: Path) -> None:
    resumed = make_trainer(tmp_path / "out", resume_from_checkpoint=INTERRUPTED)
    with pytest.warns(UserWarning, match=r"output_dir"):
        resumed.train()

    assert resumed.state.global_step == olah_hub.reference.state.global_step
    assert same_weights(olah_hub.reference.unwrapped_model, resumed.unwrapped_model)


# -- the cache, offline ------------------------------------------------------------------------------------
def test_offline_reuses_the_cache(olah_hub: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    online = Model.load(RUN, revision="v1.0")
    ModelConfig.load(RUN)
    set_hub_offline(monkeypatch)

    assert same_weights(online, Model.load(RUN, revision="v1.0"))
    assert ModelConfig.load(RUN) == olah_hub.reference.unwrapped_model.config


def test_offline_resume_after_model_load_names_the_missing_files(
    olah_hub: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Model.load(INTERRUPTED)  # the model only: train/ stays on the server
    set_hub_offline(monkeypatch)
    resumed = make_trainer(tmp_path / "out", resume_from_checkpoint=INTERRUPTED)

    with pytest.raises(
        HubError,
        match=r"is incomplete: it lacks \d+ file\(s\) this needs \(.*train/optimizer\.pt.*offline mode is on.*`hf download tamrin-tests/interrupted",
    ):
        resumed.train()


# -- what is missing -------------------------------------------------------------------------------------
def test_a_missing_revision_is_named_as_a_revision(olah_hub: SimpleNamespace) -> None:
    # olah answers 401 RepoNotFound here; the Hub answers 404 RevisionNotFound (tests/test_hub.py).
    with pytest.raises(HubError, match=r"Revision 'v9' not found in 'tamrin-tests/crnn' .*\(the repository exists\)"):
        Model.load(RUN, revision="v9")


def test_a_missing_file_is_named_as_a_file(olah_hub: SimpleNamespace) -> None:
    # olah answers 401 RepoNotFound to HEAD (500 to GET); the Hub answers 404 EntryNotFound (tests/test_hub.py).
    with pytest.raises(
        HubError, match=r"File 'ocr_trainer\.yaml' not found in 'tamrin-tests/crnn' .* at revision 'main'"
    ):
        TrainerConfig.load(RUN, filename="ocr_trainer.yaml")


def test_a_missing_repo_is_named_as_a_repo(olah_hub: SimpleNamespace) -> None:
    with pytest.raises(HubError, match=r"Repository 'tamrin-tests/nothing' on http://127\.0\.0\.1:\d+ not found"):
        Model.load("tamrin-tests/nothing")
