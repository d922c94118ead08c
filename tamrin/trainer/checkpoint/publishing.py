"""Publishing a run on the Hugging Face Hub: stage the files, write the model card, push in one commit.

`Trainer.push_to_hub` and `tamrin push` both stage one folder on disk and hand it to
`tamrin.hub.upload_folder`, which makes exactly one commit. A full push holds::

    README.md                       the model card: task, best evaluation metrics, settings, how to load
    model.safetensors  model_config.yaml  (preprocessor files, config.json)      push_model
    train/trainer_config.yaml  train/trainer_state.yaml  train/dataset_config.yaml (a tamrin Dataset)
    train/optimizer.pt  lr_scheduler.pt  scaler.pt  rng_state*.pt               push_optimizer
          callbacks.pt  gradients*.pt
    logs/training_logs.csv                                                       push_logs
    manifest.yaml                   size and sha256 of every file above

`TrainerConfig(resume_from_checkpoint="user/repo")` downloads the manifest, then exactly the files it
lists (`download_pushed_run`), verifies them and resumes exactly. A push without the model or the
optimizer state keeps listing the files it leaves out, so a resume from it stops at once and names the
missing file instead of half-loading a run.

A push deletes nothing it was not asked to (`delete_patterns`, see `tamrin.hub.upload_folder`): files
of an earlier push that this one does not hold stay in the repo. They cannot mix into a resume, which
reads only what the new manifest lists; and a symlink in the pushed directory is never followed out of it.

Tokens are never read here: huggingface_hub finds HF_TOKEN or the stored login itself, and nothing
this module writes (configs, state, card) holds one.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from tamrin import hub
from tamrin.trainer.checkpoint.files import TRAIN_DIR, read_manifest
from tamrin.trainer.checkpoint.manifest import MANIFEST, write_manifest
from tamrin.trainer.checkpoint.run_card import CARD_FILENAME, RunFacts, best_metrics, model_card
from tamrin.trainer.checkpoint.state_files import LOGS_DIR, is_resume_only
from tamrin.trainer.logs.logger import CSV_FILENAME

__all__ = [
    "best_metrics",
    "download_pushed_run",
    "model_card",
    "push_checkpoint_to_hub",
    "push_staged_folder",
    "push_trainer_to_hub",
]


T = TypeVar("T")


def push_trainer_to_hub(
    trainer: Any,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    push_model: bool = True,
    push_optimizer: bool = True,
    push_logs: bool = True,
    revision: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    delete_patterns: str | Sequence[str] | None = None,
) -> str:
    """Push a Trainer's model, configs, state and logs, with a model card, to a Hub repo in one commit.

    Call it on every process of a distributed run (it saves through `Trainer.save`); only the main
    process uploads, and every process returns the commit sha (or raises the main process's error).

    Args:
        trainer: The Trainer (usually after `train()`).
        repo_id: "user/repo" or "org/repo"; created if needed (an existing repo keeps its visibility).
        commit_message: Commit title; defaults to "Upload <model> at step <n> with tamrin".
        private: Visibility of a repo the push creates; None (default) keeps the namespace's default.
        push_model: Include the weights, model config and preprocessor files.
        push_optimizer: Include what resuming needs: optimizer, LR scheduler, scaler, RNG, callbacks.
        push_logs: Include logs/training_logs.csv.
        revision: Branch to commit to (created if needed); default: the main branch.
        token: Hub token; None lets huggingface_hub use HF_TOKEN or the stored login.
        create_pr: Open a pull request against `revision` instead of committing to it.
        delete_patterns: Repo files to delete in the same commit (globs, e.g. "train/*"); default none.

    Returns:
        The sha of the commit (a `tamrin.hub.Commit`, which also carries the pull request's url).

    Raises:
        HubError: The Hub refused or failed; the message says why and what to do.
    """
    target = _Target(repo_id, commit_message, private, revision, token, create_pr, delete_patterns)
    with tempfile.TemporaryDirectory(prefix="tamrin-push-") as tmp:
        staging = trainer.save(Path(tmp) / "push")
        model = getattr(trainer.unwrapped_model, "_orig_mod", trainer.unwrapped_model)

        def upload() -> str:
            return _push(
                staging,
                target,
                push_model=push_model,
                push_optimizer=push_optimizer,
                push_logs=push_logs,
                model_class=type(model).__name__,
            )

        return _on_main_process(trainer.accelerator, upload)


def push_checkpoint_to_hub(
    directory: str | Path,
    repo_id: str,
    *,
    logs: str | Path | None = None,
    extra_files: Mapping[str, str | Path] | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    push_optimizer: bool = True,
    push_logs: bool = True,
    revision: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    delete_patterns: str | Sequence[str] | None = None,
) -> hub.Commit:
    """Push a directory written by `Trainer.save` (a final model or a checkpoint), with a model card.

    Args:
        directory: The saved directory; it is copied, never changed. A symlink in it that points
            outside it is refused (named in the error), never followed.
        repo_id: "user/repo"; created if needed.
        logs: A training_logs.csv to push as logs/training_logs.csv (replacing the directory's copy).
        extra_files: More files to push, repo path -> local file (e.g. the run's recipe.yaml).
        commit_message, private, push_optimizer, push_logs, revision, token, create_pr, delete_patterns:
            as in `push_trainer_to_hub`.

    Returns:
        The sha of the commit.

    Raises:
        FileNotFoundError: `directory`, `logs` or an extra file does not exist.
        HubError: a symlink points out of `directory` (or `logs` is one); the Hub refused or failed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Cannot push {str(directory)!r}: it is not a directory.")
    extras = {name: Path(path) for name, path in {**(extra_files or {}), **_logs_entry(logs)}.items()}
    for name, path in extras.items():
        if not path.is_file():
            raise FileNotFoundError(f"Cannot push {str(path)!r} as {name}: no such file.")
        if path.is_symlink():
            raise hub.HubError(
                f"Cannot push {str(path)!r} as {name}: it is a symlink (to {os.readlink(path)}), and a push never "
                "follows one. Replace it with a copy of the file."
            )
    hub.local_files(directory, f"push {str(directory)!r}")  # refuses links out of it before anything is copied
    target = _Target(repo_id, commit_message, private, revision, token, create_pr, delete_patterns)
    with tempfile.TemporaryDirectory(prefix="tamrin-push-") as tmp:
        staging = Path(tmp) / "push"
        shutil.copytree(directory, staging, ignore=shutil.ignore_patterns(".tmp-*", ".old-*", ".del-*"))
        for name, path in extras.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, staging / name)
        return _push(staging, target, push_optimizer=push_optimizer, push_logs=push_logs)


def download_pushed_run(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """Download what resuming from a pushed run needs: its manifest, then exactly the files it lists.

    Both downloads read the same commit (the one the manifest came from), and files of an earlier push
    that the manifest does not list are not downloaded, so they cannot mix into the resume.

    Args:
        repo_id: The repo a run was pushed to.
        revision: Branch, tag or commit sha; default: main.
        token: Hub token; None lets huggingface_hub use HF_TOKEN or the stored login.

    Returns:
        The local snapshot folder.

    Raises:
        HubError: The repo, revision, manifest or network is unavailable, or (offline) the cache lacks files.
        ValueError: The snapshot holds run state the manifest does not list (from an earlier full download).
    """
    manifest_path = hub.download_file(repo_id, MANIFEST, revision=revision, token=token)
    snapshot = manifest_path.parent  # the manifest is at the top of the repo: this is the commit's snapshot
    listed = sorted(read_manifest(snapshot)["files"])
    hub.download(repo_id, revision=snapshot.name, allow_patterns=[MANIFEST, *map(glob.escape, listed)], token=token)
    strays = _unlisted_run_state(snapshot, set(listed))
    if strays:
        raise ValueError(
            f"Cannot resume from {repo_id!r}: its cached snapshot {snapshot} holds {', '.join(strays)}, which the "
            f"run's {MANIFEST} does not list (files an earlier push left in the repo), and a resume would load "
            f"them. Delete them from the repo (`tamrin push ... --delete 'train/*'`) or from the cache."
        )
    return snapshot


def _unlisted_run_state(snapshot: Path, listed: set[str]) -> list[str]:
    """Files under train/ of a snapshot that its manifest does not list (left there by an earlier push)."""
    train = snapshot / TRAIN_DIR
    names = (p.relative_to(snapshot).as_posix() for p in train.rglob("*") if p.is_file()) if train.is_dir() else ()
    return sorted(name for name in names if name not in listed)


@dataclasses.dataclass(frozen=True)
class _Target:
    """Where and how a push commits (what `tamrin.hub.upload_folder` takes besides the folder)."""

    repo_id: str
    commit_message: str | None
    private: bool | None
    revision: str | None
    token: str | None
    create_pr: bool
    delete_patterns: str | Sequence[str] | None


def _logs_entry(logs: str | Path | None) -> dict[str, Path]:
    return {} if logs is None else {f"{LOGS_DIR}/{CSV_FILENAME}": Path(logs)}


def push_staged_folder(
    staging: Path,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    push_model: bool = True,
    push_optimizer: bool = True,
    push_logs: bool = True,
    revision: str | None = None,
    token: str | None = None,
    create_pr: bool = False,
    delete_patterns: str | Sequence[str] | None = None,
    model_class: str | None = None,
) -> str:
    """Write the card into a staged checkpoint folder, drop what the flags exclude, and upload it.

    The card is written first, from everything staged, so that it shows the best metrics even when
    the logs are not pushed. `staging` is changed in place.

    Returns:
        The sha of the commit.
    """
    target = _Target(repo_id, commit_message, private, revision, token, create_pr, delete_patterns)
    return _push(
        staging,
        target,
        push_model=push_model,
        push_optimizer=push_optimizer,
        push_logs=push_logs,
        model_class=model_class,
    )


def _push(
    staging: Path,
    target: _Target,
    *,
    push_model: bool = True,
    push_optimizer: bool = True,
    push_logs: bool = True,
    model_class: str | None = None,
) -> hub.Commit:
    facts = RunFacts.read(staging, model_class)
    (staging / CARD_FILENAME).write_text(model_card(facts, target.repo_id), encoding="utf-8")
    manifest = read_manifest(staging) if (staging / MANIFEST).is_file() else None
    _leave_out(staging, push_model=push_model, push_optimizer=push_optimizer, push_logs=push_logs)
    if manifest is not None:
        _refresh_manifest(staging, manifest)
    step = facts.state.get("global_step", 0)
    return hub.upload_folder(
        staging,
        target.repo_id,
        commit_message=target.commit_message or f"Upload {facts.model_name} at step {step} with tamrin",
        private=target.private,
        revision=target.revision,
        token=target.token,
        create_pr=target.create_pr,
        delete_patterns=target.delete_patterns,
    )


# -- staging --------------------------------------------------------------------------------------
def _leave_out(staging: Path, *, push_model: bool, push_optimizer: bool, push_logs: bool) -> None:
    doomed: list[Path] = []
    if not push_model:  # everything at the top that is not the run's state, logs, card or manifest
        doomed += [p for p in staging.iterdir() if p.name not in (TRAIN_DIR, LOGS_DIR, CARD_FILENAME, MANIFEST)]
    if not push_optimizer and (staging / TRAIN_DIR).is_dir():
        doomed += [p for p in (staging / TRAIN_DIR).iterdir() if is_resume_only(p.relative_to(staging).as_posix())]
    if not push_logs:
        doomed.append(staging / LOGS_DIR)
    for path in doomed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _refresh_manifest(staging: Path, original: dict[str, Any]) -> None:
    """List every staged file (card included) in the manifest, and keep the entries of files left out.

    A left-out model or optimizer file stays listed, so verifying the download reports it missing
    (or, when an earlier push left an old copy, damaged) and nobody resumes from a partial push. Logs
    are not needed to resume: their entry is dropped.
    """
    write_manifest(staging, {key: value for key, value in original.items() if key != "files"})
    left_out = {
        name: entry
        for name, entry in original["files"].items()
        if not (staging / name).is_file() and not name.startswith(f"{LOGS_DIR}/")
    }
    if left_out:
        manifest = read_manifest(staging)
        manifest["files"].update(left_out)
        (staging / MANIFEST).write_text(OmegaConf.to_yaml(OmegaConf.create(manifest)), encoding="utf-8")


def _on_main_process(accelerator: Any, function: Callable[[], T]) -> T:
    """Run `function` on the main process only; every process gets its result or its error."""
    result: Any = None
    error: BaseException | None = None
    if accelerator.is_main_process:
        try:
            result = function()
        except Exception as err:  # noqa: BLE001 - re-raised below, after the other processes are told
            error = err
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        shared = broadcast_object_list([result, None if error is None else f"{type(error).__name__}: {error}"])
        result, message = shared
        if error is None and message is not None:
            raise hub.HubError(f"The main process could not push to the Hub: {message}")
    if error is not None:
        raise error
    return result
