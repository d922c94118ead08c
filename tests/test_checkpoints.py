"""Checkpoints as a user relies on them: the on-disk layout, rotation, the best model, crash safety,
resuming (fresh start, missing path, damaged checkpoint, changed config) and safe loading.

Every test is a tiny CPU run (an MLP, a few dozen samples).
"""

from __future__ import annotations

import errno
import functools
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import helpers
import pandas as pd
import pytest
import torch
from helpers import RegressionData
from safetensors.torch import load_file

from tamrin import Trainer, TrainerConfig
from tamrin.configs import ConfigError
from tamrin.trainer.callbacks import Callback
from tamrin.trainer.checkpoint import CheckpointStore
from tamrin.trainer.checkpoint.files import (
    atomic_directory,
    checkpoint_name,
    latest_valid_checkpoint,
    list_checkpoints,
    read_manifest,
    remove_stale_directories,
    rotate_checkpoints,
    verify_checkpoint,
)
from tamrin.trainer.checkpoint.manifest import write_manifest
from tamrin.trainer.checkpoint.store import load_torch

TRAIN_FILES = ("trainer_config.yaml", "trainer_state.yaml", "optimizer.pt", "lr_scheduler.pt", "rng_state.pt")


def noiseless(size: int, seed: int = 0, sign: float = 1.0) -> RegressionData:
    """labels = sign * sum(x); an eval set with sign=-1 gets worse as the model learns the train set."""
    return RegressionData(size, seed, noise=0.0, sign=sign)


# The shared factory with this file's default train set: 16 noiseless samples.
make_trainer = functools.partial(helpers.make_trainer, train_size=16, data_options={"noise": 0.0})


class LoadSpy(Callback):
    """Remembers which checkpoint was loaded and the optimizer's settings right after loading."""

    def __init__(self) -> None:
        self.loaded: str | None = None
        self.param_group: dict[str, Any] = {}

    def on_load(self, trainer: Trainer, path: str) -> None:
        self.loaded = Path(path).name
        self.param_group = dict(trainer.optimizer.param_groups[0])


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def fake_checkpoint(final: Path, step: int, content: str = "weights") -> Path:
    """A small complete checkpoint (one file + manifest), written the way the Trainer writes one."""
    with atomic_directory(final, {"global_step": step}) as staging:
        (staging / "model.safetensors").write_text(content)
    return final


# -- layout ---------------------------------------------------------------------------------------


def test_checkpoints_have_the_documented_layout_and_zero_padded_step_names(tmp_path):
    trainer = make_trainer(tmp_path, train=noiseless(24), batch_size=2, save_steps=3, lr_scheduler="linear")
    trainer.train()

    checkpoints = tmp_path / "checkpoints"
    # zero-padded, so the names sort by step (unpadded, "12" would sort before "3")
    assert names(checkpoints) == ["00000003", "00000006", "00000009", "00000012"]
    assert checkpoint_name(12) == "00000012"
    for info in list_checkpoints(checkpoints):
        directory = info.path
        assert info.global_step == int(directory.name)
        assert (directory / "model.safetensors").is_file()
        for name in TRAIN_FILES:
            assert (directory / "train" / name).is_file(), name
        manifest = read_manifest(directory)
        assert manifest["global_step"] == info.global_step
        assert {"model.safetensors", *(f"train/{name}" for name in TRAIN_FILES)} <= set(manifest["files"])
        assert verify_checkpoint(directory) is None
        assert f"global_step: {info.global_step}\n" in (directory / "train" / "trainer_state.yaml").read_text()
    assert TrainerConfig.load(checkpoints / "00000012" / "train").learning_rate == 0.05
    weights = load_file(checkpoints / "00000012" / "model.safetensors")
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(weights[name], value), name
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]  # no staging leftovers


def test_trainer_save_writes_the_same_shape_plus_the_logs(tmp_path):
    trainer = make_trainer(tmp_path, evaluation=noiseless(4, seed=1), lr_scheduler="linear", log_steps=2)
    trainer.train()
    final = trainer.save(tmp_path / "final")
    assert (final / "model.safetensors").is_file()
    for name in TRAIN_FILES:
        assert (final / "train" / name).is_file(), name
    assert (final / "logs" / "training_logs.csv").read_text() == (tmp_path / "logs" / "training_logs.csv").read_text()
    assert verify_checkpoint(final) is None


# -- rotation and the best model ------------------------------------------------------------------


def test_rotation_orders_by_the_manifest_step_not_by_name_or_mtime(tmp_path):
    """Names and mtimes disagree with the steps; rotation follows the steps in the manifests."""
    steps = {"a": 30, "b": 10, "c": 40, "d": 20}  # by name: a, b, c, d; by step: b, d, a, c
    for name, step in steps.items():
        fake_checkpoint(tmp_path / name, step)
    now = time.time()
    for name, age in {"a": 400, "b": 0, "c": 300, "d": 200}.items():  # by mtime, newest first: b, d, c, a
        os.utime(tmp_path / name, (now - age, now - age))

    assert [info.path.name for info in list_checkpoints(tmp_path)] == ["b", "d", "a", "c"]
    assert rotate_checkpoints(tmp_path, 3) == [tmp_path / "b"]  # the lowest step, though the newest file
    assert names(tmp_path) == ["a", "c", "d"]
    # limit 1, the best (step 20) kept: the newest (step 40) stays too; step 30 goes
    assert rotate_checkpoints(tmp_path, 1, keep=[str(tmp_path / "d")]) == [tmp_path / "a"]
    assert names(tmp_path) == ["c", "d"]
    assert latest_valid_checkpoint(tmp_path) == tmp_path / "c"


def test_save_total_limit_keeps_the_newest_and_the_best_and_the_best_is_loaded_at_the_end(tmp_path):
    """The eval set's labels are negated, so the eval loss rises as training goes on: an early step is
    the best, and only it and the newest checkpoint stay."""
    trainer = make_trainer(
        tmp_path,
        train=noiseless(16),
        evaluation=noiseless(8, seed=1, sign=-1.0),
        batch_size=2,
        learning_rate=0.05,
        eval_steps=2,
        save_steps=2,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="evaluation.mse",
    )
    trainer.train()

    evaluations = trainer.load_csv_logs().dropna(subset=["evaluation.mse"]).set_index("step")["evaluation.mse"]
    best_step = int(evaluations.idxmin())
    assert trainer.state.best_step == best_step < 8  # the best is not the last checkpoint
    assert names(tmp_path / "checkpoints") == [checkpoint_name(best_step), "00000008"]
    best = load_file(tmp_path / "checkpoints" / checkpoint_name(best_step) / "model.safetensors")
    last = load_file(tmp_path / "checkpoints" / "00000008" / "model.safetensors")
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, best[name]), f"{name}: the best weights were not loaded"
        assert not torch.equal(best[name], last[name])
    assert trainer.evaluate()["mse"] == pytest.approx(trainer.state.best_metric, rel=1e-6)


# -- crash safety ---------------------------------------------------------------------------------


class DiskFullOnFifthWrite(CheckpointStore):
    """A store whose fifth torch file write fails like a full disk (inside the second checkpoint)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def save_torch(self, obj: Any, path: Path) -> None:
        self.calls.append(path.name)
        if len(self.calls) == 5:  # optimizer, callbacks, rng per checkpoint: the 5th is in the second one
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        super().save_torch(obj, path)


def test_a_save_that_fails_midway_leaves_no_new_checkpoint_and_the_previous_one_usable(tmp_path):
    trainer = make_trainer(tmp_path, save_steps=2, callbacks=[LoadSpy()])
    trainer.checkpointer.store = DiskFullOnFifthWrite()
    with pytest.raises(OSError) as info:
        trainer.train()
    assert info.value.errno == errno.ENOSPC

    checkpoints = tmp_path / "checkpoints"
    assert names(checkpoints) == ["00000002"]  # no 00000004, no hidden staging directory
    assert verify_checkpoint(checkpoints / "00000002") is None

    spy = LoadSpy()
    resumed = make_trainer(tmp_path, save_steps=2, resume_from_checkpoint=True, callbacks=[spy])
    resumed.train()
    assert spy.loaded == "00000002"
    assert resumed.state.global_step == 4


def test_a_failed_replacement_keeps_the_old_checkpoint(tmp_path):
    """A step redone after a resume replaces its checkpoint; if that save fails, the old one stays."""
    final = fake_checkpoint(tmp_path / "00000004", 4, content="old")
    with pytest.raises(OSError), atomic_directory(final, {"global_step": 4}) as staging:
        (staging / "model.safetensors").write_text("new, half written")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert names(tmp_path) == ["00000004"]
    assert (final / "model.safetensors").read_text() == "old"
    assert verify_checkpoint(final) is None


def test_remove_stale_directories_restores_or_cleans_what_a_killed_save_left(tmp_path):
    fake_checkpoint(tmp_path / "00000002", 2)
    fake_checkpoint(tmp_path / ".old-00000002", 2, content="replaced")  # killed after the new one was in place
    fake_checkpoint(tmp_path / ".old-00000004", 4)  # killed between the two renames: the only complete copy
    (tmp_path / ".tmp-00000006").mkdir()  # killed while writing
    (tmp_path / ".tmp-00000006" / "model.safetensors").write_text("partial")

    remove_stale_directories(tmp_path)

    assert names(tmp_path) == ["00000002", "00000004"]
    assert (tmp_path / "00000002" / "model.safetensors").read_text() == "weights"
    assert verify_checkpoint(tmp_path / "00000004") is None
    assert latest_valid_checkpoint(tmp_path) == tmp_path / "00000004"


# -- resuming -------------------------------------------------------------------------------------


def test_resume_true_without_a_checkpoint_starts_fresh_and_says_so(tmp_path, capsys):
    trainer = make_trainer(tmp_path, resume_from_checkpoint=True)
    trainer.train()
    assert "No checkpoint in" in capsys.readouterr().out
    assert trainer.state.global_step == 4


def test_resume_from_a_path_that_does_not_exist_names_it(tmp_path):
    missing = tmp_path / "checkpoints" / "00000099"
    trainer = make_trainer(tmp_path, resume_from_checkpoint=str(missing))
    with pytest.raises(FileNotFoundError, match=str(missing)):
        trainer.train()


def test_a_truncated_file_in_the_latest_checkpoint_is_named_and_the_previous_one_is_used(tmp_path):
    make_trainer(tmp_path, save_steps=2, callbacks=[LoadSpy()]).train()
    damaged = tmp_path / "checkpoints" / "00000004" / "train" / "optimizer.pt"
    damaged.write_bytes(damaged.read_bytes()[:20])

    spy = LoadSpy()
    resumed = make_trainer(tmp_path, save_steps=2, resume_from_checkpoint=True, callbacks=[spy])
    with pytest.warns(UserWarning, match=r"00000004.*optimizer\.pt.*truncated"):
        resumed.train()
    assert spy.loaded == "00000002"
    assert resumed.state.global_step == 4
    assert verify_checkpoint(tmp_path / "checkpoints" / "00000004") is None  # redone, and whole again


class Opaque:
    """Any class instance: loading it would need a full unpickle."""

    def __init__(self) -> None:
        self.value = 1


class Payload:
    """Unpickling this runs a shell command (creates `marker`)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"{sys.executable} -c \"open({str(self.marker)!r}, 'w')\"",)


@pytest.mark.parametrize("kind", ["instance", "payload"])
def test_load_torch_refuses_pickled_objects_and_never_runs_them(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "optimizer.pt"
    torch.save(Opaque() if kind == "instance" else Payload(marker), path)
    with pytest.raises(ValueError, match="Refusing to load .*optimizer.pt.*full unpickle"):
        load_torch(path)
    assert not marker.exists()


def test_resuming_from_a_checkpoint_with_a_malicious_optimizer_file_is_refused(tmp_path):
    make_trainer(tmp_path, save_steps=2).train()
    checkpoint = tmp_path / "checkpoints" / "00000004"
    marker = tmp_path / "pwned"
    torch.save(Payload(marker), checkpoint / "train" / "optimizer.pt")
    manifest = read_manifest(checkpoint)
    write_manifest(checkpoint, {k: v for k, v in manifest.items() if k != "files"})  # a consistent forgery

    trainer = make_trainer(tmp_path, save_steps=2, resume_from_checkpoint=str(checkpoint))
    with pytest.raises(ValueError, match="Refusing to load"):
        trainer.train()
    assert not marker.exists()


def test_resuming_with_a_changed_config_warns_once_and_the_current_values_win(tmp_path):
    make_trainer(tmp_path, save_steps=2, num_epochs=1, callbacks=[LoadSpy()]).train()

    spy = LoadSpy()
    trainer = make_trainer(
        tmp_path,
        save_steps=2,
        num_epochs=2,
        learning_rate=0.1,
        weight_decay=0.01,
        resume_from_checkpoint=True,
        callbacks=[spy],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    messages = [str(w.message) for w in caught if "differs from the checkpoint" in str(w.message)]
    assert len(messages) == 1, messages
    message = messages[0]
    assert "current values win" in message
    for line in ("num_epochs: checkpoint 1 -> now 2", "learning_rate: checkpoint 0.05 -> now 0.1",
                 "weight_decay: checkpoint 0.0 -> now 0.01"):  # fmt: skip
        assert line in message
    assert "save_steps" not in message and "resume_from_checkpoint" not in message
    # the optimizer state comes from the checkpoint, its hyperparameters from the current config
    assert spy.param_group["lr"] == 0.1
    assert spy.param_group["weight_decay"] == 0.01
    assert trainer.state.global_step == 8


class Rates(LoadSpy):
    """The learning rate each optimizer update used."""

    def __init__(self) -> None:
        super().__init__()
        self.per_update: list[float] = []

    def on_step_begin(self, trainer: Trainer) -> None:
        self._lr = trainer.optimizer.param_groups[0]["lr"]

    def on_optimizer_step(self, trainer: Trainer) -> None:
        self.per_update.append(self._lr)


def test_resuming_with_a_changed_learning_rate_rescales_the_schedule(tmp_path):
    """With a scheduler, the new learning rate becomes the schedule's base from the resumed update on."""
    settings = {"save_steps": 2, "lr_scheduler": "linear", "warmup_steps": 2}
    straight = Rates()
    make_trainer(tmp_path / "straight", learning_rate=0.1, callbacks=[straight], **settings).train()
    make_trainer(tmp_path / "resumed", learning_rate=0.05, callbacks=[Rates()], **settings).train()

    rates = Rates()
    resumed = make_trainer(
        tmp_path / "resumed",
        learning_rate=0.1,
        resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoints" / "00000002"),
        callbacks=[rates],
        **settings,
    )
    with pytest.warns(UserWarning, match="learning_rate: checkpoint 0.05 -> now 0.1"):
        resumed.train()
    assert rates.loaded == "00000002"
    assert resumed.lr_scheduler.base_lrs == [0.1]
    assert rates.per_update == pytest.approx(straight.per_update[2:], rel=1e-12)  # updates 3 and 4


def test_a_fresh_run_refuses_an_output_dir_holding_another_runs_checkpoints(tmp_path):
    make_trainer(tmp_path, num_epochs=2).train()  # checkpoints at steps 4 and 8
    with pytest.raises(
        ConfigError, match=r"holds checkpoints of an earlier run \(latest: step 8\).*overwrite_output_dir"
    ):
        make_trainer(tmp_path, num_epochs=1).train()
    assert [c.global_step for c in list_checkpoints(tmp_path / "checkpoints")] == [4, 8]  # nothing was touched


def test_overwrite_output_dir_starts_clean_so_a_later_resume_cannot_pick_the_old_run(tmp_path):
    make_trainer(tmp_path, num_epochs=2).train()
    make_trainer(tmp_path, num_epochs=1, overwrite_output_dir=True).train()
    assert [c.global_step for c in list_checkpoints(tmp_path / "checkpoints")] == [4]
    assert pd.read_csv(tmp_path / "logs" / "training_logs.csv")["step"].max() == 4
    resumed = make_trainer(tmp_path, num_epochs=1, resume_from_checkpoint=True)
    resumed.train()
    assert resumed.state.global_step == 4


# -- a damaged or hand-edited manifest is a damaged checkpoint (issue 15) ------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("global_step", ".inf", "is not a step number"),
        ("global_step", "null", "is not a step number"),
        ("global_step", "[1, 2]", "is not a step number"),
        ("files", "[model.safetensors]", "`files` must list every file"),
        ("files", "{}", "`files` must list every file"),
        ("files", "{model.safetensors: {sha256: abc}}", "is not a byte count"),
        ("files", "{../escape: {size: 1, sha256: abc}}", "is not a path inside the checkpoint"),
    ],
)
def test_a_hand_edited_manifest_makes_a_damaged_checkpoint_that_resume_skips(tmp_path, field, value, problem):
    trainer = make_trainer(tmp_path, save_steps=2, max_steps=4)
    trainer.train()
    manifest = tmp_path / "checkpoints" / "00000004" / "manifest.yaml"
    lines = manifest.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{field}:"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith(" ")), len(lines))
    manifest.write_text("\n".join([*lines[:start], f"{field}: {value}", *lines[end:]]) + "\n")

    assert problem in verify_checkpoint(manifest.parent)
    assert [info.global_step for info in list_checkpoints(tmp_path / "checkpoints")] == [2]
    with pytest.warns(UserWarning, match=rf"Skipping checkpoint .*00000004: .*{re.escape(problem)}"):
        assert latest_valid_checkpoint(tmp_path / "checkpoints").name == "00000002"


# -- a run owns its output_dir (issue 15) ----------------------------------------------------------------
def test_a_second_run_in_the_same_output_dir_is_refused_while_the_first_holds_it(tmp_path):
    from tamrin.trainer.run_lock import RunLock

    holder = RunLock(tmp_path)
    holder.acquire()  # another run, alive
    try:
        with pytest.raises(
            ConfigError, match=rf"{re.escape(str(tmp_path))} is in use by another run \(pid {os.getpid()}"
        ):
            make_trainer(tmp_path, max_steps=2).train()
        assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "logs").exists()  # nothing written
    finally:
        holder.release()
    make_trainer(tmp_path, max_steps=2).train()  # free again


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    code = (
        "import os, signal, sys; from tamrin.trainer.run_lock import RunLock; "
        f"RunLock({str(tmp_path)!r}).acquire(); os.kill(os.getpid(), signal.SIGKILL)"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    assert (tmp_path / ".tamrin.lock").is_file()
    make_trainer(tmp_path, max_steps=2).train()  # the kernel dropped the dead run's lock


# -- SIGTERM and Ctrl-C stop at a step boundary with a checkpoint (issue 15) -------------------------------
class SignalAt(Callback):
    """Sends this process `signum` in the middle of step `step` (as a scheduler's SIGTERM would)."""

    def __init__(self, step: int, signum: int, times: int = 1) -> None:
        self.step, self.signum, self.times = step, signum, times

    def on_step_begin(self, trainer) -> None:
        if trainer.state.global_step + 1 == self.step:
            for _ in range(self.times):
                signal.raise_signal(self.signum)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_stops_at_the_step_with_a_checkpoint_and_the_resume_is_exact(tmp_path, signum, code):
    from tamrin.trainer.interruption import RunInterrupted

    settings = {"num_epochs": 2, "save_steps": 100, "dataloader_shuffle": True, "gradient_accumulation_steps": 3}
    straight = make_trainer(tmp_path / "straight", **settings)
    straight.train()
    stopped = make_trainer(tmp_path / "run", callbacks=[SignalAt(5, signum)], **settings)
    with pytest.raises(
        RunInterrupted, match=rf"Stopped by {signal.Signals(signum).name} at step 5, after saving"
    ) as info:
        stopped.train()
    assert info.value.exit_code == code and info.value.checkpoint.endswith("00000005")
    assert signal.getsignal(signum) is not None and signal.getsignal(signum) is not stopped._signals._handle
    resumed = make_trainer(tmp_path / "run", resume_from_checkpoint=True, **settings)
    resumed.train()
    for name, value in helpers.parameters(straight.model).items():
        assert torch.equal(value, dict(resumed.model.named_parameters())[name]), name


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    trainer = make_trainer(tmp_path, num_epochs=2, callbacks=[SignalAt(3, signal.SIGINT, times=2)])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_the_cli_turns_a_stop_on_a_signal_into_one_line_and_the_signals_exit_code(monkeypatch, capsys):
    from tamrin.cli import main
    from tamrin.commands import train as train_command
    from tamrin.trainer.interruption import RunInterrupted

    def stopped(recipe):
        raise RunInterrupted(signal.SIGTERM, 12, "out/checkpoints/00000012")

    monkeypatch.setattr(train_command, "train_from_recipe", stopped)
    assert main(["train"]) == 143
    err = capsys.readouterr().err
    assert "Stopped by SIGTERM at step 12" in err and "trainer.resume_from_checkpoint=true" in err
    assert "Traceback" not in err


# -- going back to an older checkpoint starts a new branch (issue 15) ---------------------------------------
class SaveAndStopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer) -> None:
        if trainer.state.global_step == self.step:
            trainer.control.should_save = trainer.control.should_stop = True


def test_going_back_then_crashing_resumes_the_redo_not_the_abandoned_run(tmp_path, capsys):
    settings = {"num_epochs": 2, "save_steps": 2, "save_total_limit": 2}
    make_trainer(tmp_path, **settings).train()  # run A: 8 steps, keeps 00000006 and 00000008
    checkpoints = tmp_path / "checkpoints"
    assert names(checkpoints) == ["00000006", "00000008"]
    redo = make_trainer(tmp_path, resume_from_checkpoint=str(checkpoints / "00000006"), **settings)
    redo.add_callback(SaveAndStopAt(7))  # the redo saves at step 7 and "crashes"
    redo.train()
    assert "the later checkpoint(s) 00000008 of the run it left are kept in" in capsys.readouterr().out
    abandoned = tmp_path / "abandoned" / "after-00000006-1"
    assert names(abandoned) == ["00000008"] and verify_checkpoint(abandoned / "00000008") is None
    assert names(checkpoints) == ["00000006", "00000007"]  # rotation kept the redo's own checkpoints

    spy = LoadSpy()
    resumed = make_trainer(tmp_path, resume_from_checkpoint=True, callbacks=[spy], **settings)
    resumed.train()
    assert spy.loaded == "00000007"  # the redo's newest, not run A's 00000008
    logged = resumed.load_csv_logs()["step"].tolist()
    assert logged == sorted(set(logged))  # each step once


# -- symlinks used for disk space (issue 15) ----------------------------------------------------------------
def test_a_symlinked_checkpoints_dir_rotates_resumes_and_survives_overwrite_output_dir(tmp_path):
    run, disk = tmp_path / "run", tmp_path / "other-disk"
    disk.mkdir()
    run.mkdir()
    (run / "checkpoints").symlink_to(disk, target_is_directory=True)
    settings = {"save_steps": 2, "save_total_limit": 2}
    make_trainer(run, num_epochs=2, **settings).train()
    assert names(disk) == ["00000006", "00000008"]  # rotation deleted inside the linked folder
    resumed = make_trainer(run, num_epochs=3, resume_from_checkpoint=True, **settings)
    resumed.train()
    assert resumed.state.global_step == 12 and names(disk) == ["00000010", "00000012"]
    make_trainer(run, num_epochs=1, overwrite_output_dir=True, **settings).train()
    assert (run / "checkpoints").is_symlink()  # the user's disk layout is kept, the old run is gone
    assert names(disk) == ["00000002", "00000004"]


def test_a_symlinked_old_checkpoint_is_rotated_as_a_link_and_its_target_is_left_untouched(tmp_path):
    run, disk = tmp_path / "run", tmp_path / "other-disk"
    disk.mkdir()
    make_trainer(run, num_epochs=2, save_steps=2).train()
    checkpoints = run / "checkpoints"
    (checkpoints / "00000002").rename(disk / "00000002")
    os.symlink(os.path.relpath(disk / "00000002", checkpoints), checkpoints / "00000002")
    for epochs, expected in ((3, ["00000010", "00000012"]), (4, ["00000014", "00000016"])):  # today: crashed
        resumed = make_trainer(run, num_epochs=epochs, resume_from_checkpoint=True, save_steps=2, save_total_limit=2)
        resumed.train()
        assert names(checkpoints) == expected
    assert verify_checkpoint(disk / "00000002") is None  # never deleted through the link


def test_going_back_to_before_a_symlinked_checkpoint_keeps_the_link_working_in_abandoned(tmp_path):
    run, disk = tmp_path / "run", tmp_path / "other-disk"
    disk.mkdir()
    make_trainer(run, num_epochs=2, save_steps=2).train()
    checkpoints = run / "checkpoints"
    (checkpoints / "00000006").rename(disk / "00000006")
    os.symlink(os.path.relpath(disk / "00000006", checkpoints), checkpoints / "00000006")  # relative link
    make_trainer(run, num_epochs=2, save_steps=2, resume_from_checkpoint=str(checkpoints / "00000004")).train()
    moved = run / "abandoned" / "after-00000004-1" / "00000006"
    assert moved.is_symlink() and verify_checkpoint(moved) is None  # still reaches its target
    make_trainer(run, num_epochs=1, save_steps=2, overwrite_output_dir=True).train()
    assert verify_checkpoint(disk / "00000006") is None  # overwrite removed the link, not the target


def test_a_checkpoint_is_hashed_once_per_process_and_a_rewritten_file_again(tmp_path, monkeypatch):
    """A recipe resume verifies the checkpoint twice (before the data, then in the Trainer): the
    second check must not read a multi-GB checkpoint again, yet must see a file changed since."""
    from tamrin.trainer.checkpoint import files
    from tamrin.trainer.checkpoint.manifest import write_manifest

    checkpoint = tmp_path / "00000004"
    (checkpoint / "train").mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"w" * 1000)
    (checkpoint / "train" / "optimizer.pt").write_bytes(b"o" * 100)
    write_manifest(checkpoint, {"global_step": 4})
    hashed = []
    real_sha256 = files.sha256_of
    monkeypatch.setattr(files, "sha256_of", lambda path: hashed.append(path.name) or real_sha256(path))

    assert files.verify_checkpoint(checkpoint) is None
    assert files.verify_checkpoint(checkpoint) is None
    assert sorted(hashed) == ["model.safetensors", "optimizer.pt"]  # each file read once

    weights = checkpoint / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"x" * 1000)  # same size, other bytes
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert "model.safetensors is damaged" in files.verify_checkpoint(checkpoint)
