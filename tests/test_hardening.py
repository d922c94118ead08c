"""Bad input the Trainer must survive or refuse: NaN/inf losses, a full disk, damaged checkpoints and
logs, and hostile files (a pickle that would run code, a config that names a module, paths that
lead out of output_dir). Each test is one case of docs/reliability.md."""

from __future__ import annotations

import errno
import functools
import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helpers
import pandas as pd
import pytest
import torch
from helpers import RegressionData, StopAt

from tamrin import Trainer, TrainerConfig
from tamrin.configs import ConfigError
from tamrin.hub import is_repo_id
from tamrin.models import Model, ModelConfig
from tamrin.recipes import load_recipe
from tamrin.trainer.callbacks import Callback
from tamrin.trainer.checkpoint import CheckpointStore
from tamrin.trainer.checkpoint.files import (
    MANIFEST,
    CheckpointWriteError,
    checkpoint_name,
    read_manifest,
    verify_checkpoint,
)
from tamrin.trainer.checkpoint.manifest import write_manifest
from tamrin.trainer.logs.logger import CSV_FILENAME, load_logs
from tamrin.trainer.nonfinite import NonFiniteLossError


def make_data(size: int = 24, bad: dict[int, float] | None = None) -> RegressionData:
    """Noiseless regression samples; `bad` puts a NaN/inf input into the samples it names."""
    data = RegressionData(size, noise=0.0)
    for index, value in (bad or {}).items():
        data.x[index, 0] = value
    return data


class Recorder(Callback):
    """Keeps the weights after every step (and before the first), and the checkpoint a run resumed from."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}
        self.loaded: str | None = None

    def _keep(self, trainer: Trainer) -> None:
        self.weights[trainer.state.global_step] = {
            name: tensor.clone() for name, tensor in trainer.unwrapped_model.state_dict().items()
        }

    def on_train_begin(self, trainer: Trainer) -> None:
        self._keep(trainer)

    def on_step_end(self, trainer: Trainer) -> None:
        self._keep(trainer)

    def on_load(self, trainer: Trainer, path: str) -> None:
        self.loaded = Path(path).name


# The shared factory with this file's run: 24 noiseless samples (shuffled: TrainerConfig's default); a
# dropout MLP; AdamW; a log row every step and no evaluation.
make_trainer = functools.partial(
    helpers.make_trainer,
    train_size=24,
    data_options={"noise": 0.0},
    model_options={"activation": None, "dropout": 0.2},
    settings=helpers.REGRESSION_SETTINGS,
    learning_rate=0.05,
    optimizer="adamw",
    do_evaluate=False,
    log_steps=1,
    seed=7,
)


def checkpoint_dirs(output_dir: Path) -> list[str]:
    return sorted(p.name for p in (output_dir / "checkpoints").iterdir())


def reseal(checkpoint: Path) -> None:
    """Rewrite a checkpoint's manifest after editing its files, as an attacker who controls it would."""
    info = {key: value for key, value in read_manifest(checkpoint).items() if key != "files"}
    (checkpoint / MANIFEST).unlink()
    write_manifest(checkpoint, info)


# -- NaN / inf losses ----------------------------------------------------------------------------
@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
def test_nonfinite_loss_stops_naming_the_step_and_batch_and_saves_nothing_after_it(tmp_path, value):
    # sample 9 is in batch index 2 of the first epoch (no shuffle): step 3
    trainer = make_trainer(
        tmp_path, train=make_data(bad={9: value}), dataloader_shuffle=False, save_steps=2, log_steps=1
    )
    with pytest.raises(NonFiniteLossError, match=r"at step 3 \(batch index 2 of its epoch\)") as caught:
        trainer.train()
    assert "00000002" in str(caught.value)  # the checkpoint to go back to
    assert checkpoint_dirs(tmp_path) == ["00000002"]
    assert load_logs(tmp_path)["step"].tolist() == [1, 2]  # no row written at or after the bad step


def test_nonfinite_loss_is_reported_at_its_own_step_even_when_found_later(tmp_path):
    # no log or save until the end of the epoch: the check runs there and still names step 2, batch 1
    trainer = make_trainer(
        tmp_path, train=make_data(bad={5: math.nan}), dataloader_shuffle=False, log_steps=None, save_steps=None
    )
    with pytest.raises(NonFiniteLossError, match=r"at step 2 \(batch index 1 of its epoch\).*No checkpoint was saved"):
        trainer.train()
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("accumulation", [1, 3])
def test_nan_policy_skip_drops_that_update_and_counts_it_in_the_logs(tmp_path, accumulation):
    recorder = Recorder()
    trainer = make_trainer(
        tmp_path,
        train=make_data(bad={5: math.nan}),  # step 2 (batch index 1)
        dataloader_shuffle=False,
        nan_policy="skip",
        gradient_accumulation_steps=accumulation,
        callbacks=[recorder],
    )
    trainer.train()

    weights = recorder.weights
    dropped_window = (1, 2) if accumulation == 1 else (0, 3)  # the weights did not move over the bad window
    for name in weights[0]:
        assert torch.equal(weights[dropped_window[0]][name], weights[dropped_window[1]][name]), name
        assert not torch.equal(weights[dropped_window[1]][name], weights[6][name]), name  # later updates apply
        assert torch.isfinite(weights[6][name]).all(), name
    assert trainer.state.skipped_updates == 1
    assert trainer.state.optimizer_steps == 6 // accumulation - 1
    logs = load_logs(tmp_path)
    skipped_at = 2 if accumulation == 1 else 3  # the update the bad window would have made
    assert logs["train.skipped_updates"].tolist() == [float(step >= skipped_at) for step in range(1, 7)]
    finite = logs.set_index("step")["train.loss"].drop(index=2)  # step 2's only loss was NaN: no mean to log
    assert finite.notna().all() and finite.map(math.isfinite).all()


# -- a full disk ---------------------------------------------------------------------------------
class FullDiskAtStep4(CheckpointStore):
    """A store whose writes into the checkpoint of step 4 fail as a full disk makes each writer fail."""

    def __init__(self, where: str) -> None:
        self.where = where

    def save_torch(self, obj: Any, path: Path) -> None:
        if path.parent.parent.name != ".tmp-00000004" or self.where == "safetensors":
            return super().save_torch(obj, path)
        if self.where == "oserror":  # half the file is on disk, then the write fails
            path.write_bytes(b"\x00" * 10)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        try:  # torch.save: a RuntimeError whose context is the OSError of the file write
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    def save_weights(self, model: torch.nn.Module, directory: Path) -> None:
        if self.where == "safetensors" and Path(directory).name == ".tmp-00000004":  # its own error type
            raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
        return super().save_weights(model, directory)


@pytest.mark.parametrize("where", ["oserror", "torch.save", "safetensors"])
def test_disk_full_while_saving_keeps_the_previous_checkpoint_and_says_what_and_where(tmp_path, where):
    trainer = make_trainer(tmp_path, save_steps=2, max_steps=6, callbacks=[Recorder()])
    trainer.checkpointer.store = FullDiskAtStep4(where)
    with pytest.raises(CheckpointWriteError) as caught:
        trainer.train()

    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert f"Could not save the checkpoint {tmp_path / 'checkpoints' / '00000004'}: the disk is full" in message
    assert f"the previous checkpoint, {tmp_path / 'checkpoints' / '00000002'} (step 2), is intact" in message
    assert "Free space on the disk" in message and "resume_from_checkpoint=True" in message
    assert checkpoint_dirs(tmp_path) == ["00000002"]  # no half-written or hidden leftovers
    assert verify_checkpoint(tmp_path / "checkpoints" / "00000002") is None

    # space was freed: the same run resumes from the previous checkpoint
    recorder = Recorder()
    make_trainer(tmp_path, save_steps=2, max_steps=6, resume_from_checkpoint=True, callbacks=[recorder]).train()
    assert recorder.loaded == "00000002"
    assert checkpoint_dirs(tmp_path) == ["00000002", "00000004", "00000006"]


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB file system (tmpfs); needs the right to mount, else the test is skipped."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the simulated disk-full tests cover this")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


class FillDisk(Callback):
    """After the first checkpoint, fill the disk but for a few KiB."""

    def __init__(self, disk: Path) -> None:
        self.disk = disk

    def on_save(self, trainer: Trainer, path: str) -> None:
        stats = os.statvfs(self.disk)
        (self.disk / "filler").write_bytes(b"x" * (stats.f_bavail * stats.f_frsize - 4096))


def test_really_full_disk_is_reported_the_same_way(small_disk):
    trainer = make_trainer(small_disk / "out", save_steps=2, max_steps=6, callbacks=[FillDisk(small_disk)])
    with pytest.raises(CheckpointWriteError, match=r"00000004: the disk is full.*00000002 \(step 2\), is intact"):
        trainer.train()
    assert checkpoint_dirs(small_disk / "out") == ["00000002"]
    assert verify_checkpoint(small_disk / "out" / "checkpoints" / "00000002") is None


# -- damaged checkpoints and logs ----------------------------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage, name",
    [
        (_truncate, "train/optimizer.pt"),
        (_truncate, "model.safetensors"),
        (Path.unlink, "train/rng_state.pt"),
        (Path.unlink, "train/trainer_state.yaml"),
        (Path.unlink, MANIFEST),
    ],
    ids=["truncated-optimizer", "truncated-weights", "missing-rng", "missing-state", "missing-manifest"],
)
def test_damaged_latest_checkpoint_is_named_in_a_warning_and_the_previous_one_resumes_exactly(tmp_path, damage, name):
    reference = make_trainer(tmp_path / "reference", save_steps=2, max_steps=8, callbacks=[Recorder(), StopAt(None)])
    reference.train()

    run = tmp_path / "run"
    make_trainer(run, save_steps=2, max_steps=8, callbacks=[Recorder(), StopAt(4)]).train()
    damage(run / "checkpoints" / "00000004" / name)
    recorder = Recorder()
    resumed = make_trainer(
        run, save_steps=2, max_steps=8, resume_from_checkpoint=True, callbacks=[recorder, StopAt(None)]
    )
    with pytest.warns(UserWarning, match=rf"Skipping .*checkpoint .*00000004.*{name.split('/')[-1]}"):
        resumed.train()

    assert recorder.loaded == "00000002"
    for key, tensor in reference.unwrapped_model.state_dict().items():
        assert torch.equal(tensor, resumed.unwrapped_model.state_dict()[key]), key
    assert verify_checkpoint(run / "checkpoints" / "00000004") is None  # redone and replaced


@pytest.mark.parametrize("damage", ["cut", "zeros"])
def test_damaged_last_csv_line_is_repaired_without_losing_earlier_rows(tmp_path, damage):
    reference = tmp_path / "reference"
    make_trainer(reference, save_steps=3, max_steps=6, callbacks=[StopAt(None)]).train()

    run = tmp_path / "run"
    make_trainer(run, save_steps=3, max_steps=6, callbacks=[StopAt(4)]).train()
    csv = run / "logs" / CSV_FILENAME
    lines = csv.read_bytes().splitlines(keepends=True)
    assert lines[-1].startswith(b"4,")
    torn = lines[-1][: len(lines[-1]) // 2] if damage == "cut" else b"\x00" * 40  # a crash mid-row of step 4
    csv.write_bytes(b"".join(lines[:-1]) + torn)

    with pytest.warns(UserWarning, match=rf"{CSV_FILENAME}: dropped damaged line 5"):
        make_trainer(run, save_steps=3, max_steps=6, resume_from_checkpoint=True, callbacks=[StopAt(None)]).train()
    assert csv.read_bytes().splitlines(keepends=True)[:4] == lines[:4]  # header and steps 1-3 untouched
    pd.testing.assert_frame_equal(load_logs(reference), load_logs(run))


# -- hostile files -------------------------------------------------------------------------------
class Payload:
    """Unpickling this makes a directory: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("filename", ["optimizer.pt", "rng_state.pt", "callbacks.pt"])
def test_state_file_holding_a_code_running_pickle_is_refused_without_running_it(tmp_path, filename):
    output_dir = tmp_path / "out"
    make_trainer(output_dir, save_steps=2, max_steps=4, callbacks=[StopAt(2)]).train()
    checkpoint = output_dir / "checkpoints" / "00000002"
    marker = tmp_path / "code-ran"
    state_file = checkpoint / "train" / filename
    hostile = {"state": {}, "param_groups": [], "payload": Payload(marker)}
    buffer = io.BytesIO()
    torch.save(hostile, buffer)
    state_file.write_bytes(buffer.getvalue())
    reseal(checkpoint)  # the manifest agrees: only the content is hostile

    trainer = make_trainer(output_dir, save_steps=2, max_steps=4, resume_from_checkpoint=True, callbacks=[StopAt(None)])
    with pytest.raises(ValueError, match=rf"Refusing to load .*{filename}.*could run arbitrary code"):
        trainer.train()
    assert not marker.exists()
    torch.load(state_file, weights_only=False)  # the payload is real: a full unpickle runs it
    assert marker.is_dir()


EVIL_MODULE = "tamrin_test_evil_module"


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """A module on sys.path that makes a marker directory when imported."""
    marker = tmp_path / "imported"
    (tmp_path / f"{EVIL_MODULE}.py").write_text(
        f"import os\nos.mkdir({str(marker)!r})\nclass Evil:\n    def __init__(self, *a, **k):\n        os.mkdir({str(marker)!r} + '-built')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    assert EVIL_MODULE not in sys.modules
    assert not marker.exists()


@pytest.mark.parametrize(
    "config_text",
    [
        f"name: {EVIL_MODULE}.Evil\n",
        f"name: crnn\n_target_: {EVIL_MODULE}.Evil\n",
        f"_target_: {EVIL_MODULE}.Evil\nname: {EVIL_MODULE}\n",
        "name: !!python/object/apply:os.mkdir ['{marker}']\n",
    ],
    ids=["name-is-a-module-path", "hydra-target", "target-and-module-name", "yaml-python-tag"],
)
def test_model_config_cannot_make_tamrin_import_or_build_an_unregistered_class(tmp_path, evil_module, config_text):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model_config.yaml").write_text(config_text.format(marker=evil_module))
    with pytest.raises(ConfigError):
        ModelConfig.load(model_dir)
    with pytest.raises(ConfigError):
        Model.load(model_dir)


def test_recipe_naming_a_module_as_its_model_is_refused(evil_module):
    with pytest.raises(ConfigError, match=rf"Unknown model name '{EVIL_MODULE}.Evil'"):
        load_recipe(None, [f"model.name={EVIL_MODULE}.Evil"])


def test_trainer_config_with_a_yaml_python_tag_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    (tmp_path / "trainer_config.yaml").write_text(
        f"task: regression\nseed: !!python/object/apply:os.mkdir ['{marker}']\n"
    )
    with pytest.raises(ConfigError):
        TrainerConfig.load(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("field", ["checkpoints_dir", "logs_dir"])
@pytest.mark.parametrize("value", ["../outside", "a/../../outside", "/tmp/outside", "~/outside", ".", "a/..", ""])
def test_checkpoints_and_logs_dirs_cannot_lead_out_of_output_dir(field, value):
    with pytest.raises(ConfigError, match=rf"`{field}='{value}'` must be a folder inside output_dir"):
        TrainerConfig(**{field: value})
    TrainerConfig(**{field: "sub/folder"})  # a nested folder is fine


def test_recipe_override_cannot_send_the_logs_out_of_output_dir():
    with pytest.raises(ConfigError, match=r"`logs_dir='../../elsewhere'` must be a folder inside output_dir"):
        load_recipe(None, ["trainer.logs_dir=../../elsewhere"])


def test_checkpoint_whose_state_names_a_path_as_its_step_is_refused_before_any_write(tmp_path):
    output_dir = tmp_path / "run" / "out"
    make_trainer(output_dir, save_steps=2, max_steps=4, callbacks=[StopAt(2)]).train()
    checkpoint = output_dir / "checkpoints" / "00000002"
    state = checkpoint / "train" / "trainer_state.yaml"
    state.write_text(state.read_text().replace("global_step: 2", "global_step: ../../../escaped"))
    reseal(checkpoint)
    before = sorted(tmp_path.rglob("*"))

    trainer = make_trainer(output_dir, save_steps=2, max_steps=4, resume_from_checkpoint=True, callbacks=[StopAt(None)])
    with pytest.raises(ValueError, match=r"trainer_state.yaml: `global_step='../../../escaped'` must be an int >= 0"):
        trainer.train()
    assert sorted(tmp_path.rglob("*")) == before
    with pytest.raises(ValueError):
        checkpoint_name("../../../escaped")  # checkpoint names are only ever zero-padded step numbers


@pytest.mark.parametrize("value", ["../../elsewhere/checkpoint", "/nonexistent/checkpoint", "user/../../repo"])
def test_a_path_or_repo_id_that_leads_nowhere_is_refused_without_a_download(tmp_path, value, monkeypatch):
    from tamrin import hub

    monkeypatch.setattr(hub, "download", lambda *a, **k: pytest.fail("a download was attempted"))
    assert not is_repo_id(value)
    trainer = make_trainer(tmp_path / "out", max_steps=2, resume_from_checkpoint=value)
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory or Hub repo id"):
        trainer.train()
    with pytest.raises(FileNotFoundError, match="no such directory or Hub repo id"):
        make_trainer(tmp_path / "out", max_steps=2, init_weights_from=value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- the catalogue ---------------------------------------------------------------------------------
def test_reliability_catalogue_numbers_its_cases_and_names_only_tests_that_exist():
    docs = Path(__file__).parents[1] / "docs" / "reliability.md"
    text = docs.read_text()
    rows = re.findall(r"^\| (\d+) \| .* \| (.*) \|$", text, flags=re.MULTILINE)
    assert [int(number) for number, _ in rows] == list(range(1, len(rows) + 1))
    for number, cell in rows:
        module = None
        for file, name in re.findall(r"`(test_\w+\.py)?::(test_\w+)", cell):
            module = file or module
            assert module, f"case {number}: {name} names no test file"
            source = (Path(__file__).parent / module).read_text()
            assert re.search(rf"^def {name}\(", source, flags=re.MULTILINE), f"case {number}: no {module}::{name}"
    total, own, others = map(
        int, re.search(r"\*\*(\d+) cases in all\*\*: (\d+) from .* and (\d+) from", text, re.S).groups()
    )
    first_other = int(re.search(r"### Cases from the other issues\n\n.*?\n.*?\n\| (\d+) \|", text).group(1))
    assert (total, own, others) == (len(rows), first_other - 1, len(rows) - first_other + 1)


def test_nonfinite_guard_finds_the_first_bad_step_across_batched_checks() -> None:
    from tamrin.trainer.nonfinite import NonFiniteGuard

    guard = NonFiniteGuard(torch.device("cpu"))
    losses = torch.rand(600, generator=torch.Generator().manual_seed(0))
    losses[300], losses[450] = float("nan"), float("inf")  # past the first batched check (every 256)
    finite_sum = torch.zeros(())
    for step, loss in enumerate(losses, start=1):
        if guard.observe(loss, global_step=step, epoch_batch=step - 1):
            finite_sum += guard.flush()
    finite_sum += guard.flush()

    assert (int(guard.first_step), int(guard.first_batch)) == (301, 300)
    assert guard.take_bad_count() == 2
    expected = losses[torch.isfinite(losses)].sum()
    assert torch.allclose(finite_sum, expected)
    with pytest.raises(FloatingPointError, match="at step 301 \\(batch index 300 of its epoch\\)"):
        guard.raise_if_seen(lambda: "")
