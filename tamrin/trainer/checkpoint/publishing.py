"""Publishing a run on the Hugging Face Hub: stage the files, write the model card, push in one commit.

`Trainer.push_to_hub` and `tamrin push` both stage one folder on disk and hand it to
`tamrin.hub.upload_folder`, which makes exactly one commit. A full push holds::

    README.md                       the model card: task, best evaluation metrics, settings, how to load
    model.safetensors  model_config.yaml  (preprocessor files, config.json)      push_model
    train/trainer_config.yaml  train/trainer_state.yaml  train/dataset_config.yaml (a tamrin Dataset)
    train/optimizer.pt  lr_scheduler.pt  scaler.pt  rng_state*.pt               push_optimizer
          callbacks.pt  gradients.pt
    logs/training_logs.csv                                                       push_logs
    manifest.yaml                   size and sha256 of every file above

`TrainerConfig(resume_from_checkpoint="user/repo")` verifies the download against the manifest and
resumes exactly. A push without the model or the optimizer state keeps listing the files it leaves
out, so a resume from it stops at once and names the missing file instead of half-loading a run.
Each push replaces the revision's files (`upload_folder(replace=True)` deletes, in the same commit,
what the staged folder does not hold), so no file of an earlier push can mix into a later run.

Tokens are never read here: huggingface_hub finds HF_TOKEN or the stored login itself, and nothing
this module writes (configs, state, card) holds one.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from tamrin import hub
from tamrin.trainer.checkpoint.files import TRAIN_DIR, read_manifest
from tamrin.trainer.checkpoint.manifest import MANIFEST, write_manifest
from tamrin.trainer.checkpoint.state_files import LOGS_DIR, is_resume_only
from tamrin.trainer.logs.logger import CSV_FILENAME, load_logs
from tamrin.trainer.logs.review import summarize_logs
from tamrin.version import __version__

__all__ = ["push_trainer_to_hub", "push_checkpoint_to_hub", "push_staged_folder", "best_metrics", "model_card"]

CARD_FILENAME = "README.md"
CARD_SETTINGS = (
    "optimizer", "learning_rate", "weight_decay", "lr_scheduler", "warmup_steps", "batch_size",
    "gradient_accumulation_steps", "num_epochs", "max_steps", "max_grad_norm", "mixed_precision", "seed",
    "metric_for_best_model",
)  # fmt: skip

T = TypeVar("T")


def push_trainer_to_hub(
    trainer: Any,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool = False,
    push_model: bool = True,
    push_optimizer: bool = True,
    push_logs: bool = True,
    revision: str | None = None,
    token: str | None = None,
) -> str:
    """Push a Trainer's model, configs, state and logs, with a model card, to a Hub repo in one commit.

    Call it on every process of a distributed run (it saves through `Trainer.save`); only the main
    process uploads, and every process returns the commit sha (or raises the main process's error).

    Args:
        trainer: The Trainer (usually after `train()`).
        repo_id: "user/repo" or "org/repo"; created if needed (an existing repo keeps its visibility).
        commit_message: Commit title; defaults to "Upload <model> at step <n> with tamrin".
        private: Create the repo as private.
        push_model: Include the weights, model config and preprocessor files.
        push_optimizer: Include what resuming needs: optimizer, LR scheduler, scaler, RNG, callbacks.
        push_logs: Include logs/training_logs.csv.
        revision: Branch to commit to (created if needed); default: the main branch.
        token: Hub token; None lets huggingface_hub use HF_TOKEN or the stored login.

    Returns:
        The sha of the commit.

    Raises:
        HubError: The Hub refused or failed; the message says why and what to do.
    """
    with tempfile.TemporaryDirectory(prefix="tamrin-push-") as tmp:
        staging = trainer.save(Path(tmp) / "push")

        def upload() -> str:
            return push_staged_folder(
                staging,
                repo_id,
                commit_message=commit_message,
                private=private,
                push_model=push_model,
                push_optimizer=push_optimizer,
                push_logs=push_logs,
                revision=revision,
                token=token,
                model_class=type(getattr(trainer.unwrapped_model, "_orig_mod", trainer.unwrapped_model)).__name__,
            )

        return _on_main_process(trainer.accelerator, upload)


def push_checkpoint_to_hub(
    directory: str | Path,
    repo_id: str,
    *,
    logs: str | Path | None = None,
    commit_message: str | None = None,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
) -> str:
    """Push a directory written by `Trainer.save` (a final model or a checkpoint), with a model card.

    Args:
        directory: The saved directory; it is copied, never changed.
        repo_id: "user/repo"; created if needed.
        logs: A training_logs.csv to push as logs/training_logs.csv (replacing the directory's copy).
        commit_message, private, revision, token: as in `push_trainer_to_hub`.

    Returns:
        The sha of the commit.

    Raises:
        FileNotFoundError: `directory` or `logs` does not exist. HubError: the Hub refused or failed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Cannot push {str(directory)!r}: it is not a directory.")
    if logs is not None and not Path(logs).is_file():
        raise FileNotFoundError(f"Cannot push the logs {str(logs)!r}: no such file.")
    with tempfile.TemporaryDirectory(prefix="tamrin-push-") as tmp:
        staging = Path(tmp) / "push"
        shutil.copytree(directory, staging, ignore=shutil.ignore_patterns(".tmp-*", ".old-*", ".del-*"))
        if logs is not None:
            (staging / LOGS_DIR).mkdir(exist_ok=True)
            shutil.copyfile(logs, staging / LOGS_DIR / CSV_FILENAME)
        return push_staged_folder(
            staging, repo_id, commit_message=commit_message, private=private, revision=revision, token=token
        )


def push_staged_folder(
    staging: Path,
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool = False,
    push_model: bool = True,
    push_optimizer: bool = True,
    push_logs: bool = True,
    revision: str | None = None,
    token: str | None = None,
    model_class: str | None = None,
) -> str:
    """Write the card into a staged checkpoint folder, drop what the flags exclude, and upload it.

    The card is written first, from everything staged, so that it shows the best metrics even when
    the logs are not pushed. `staging` is changed in place.

    Returns:
        The sha of the commit.
    """
    facts = _RunFacts.read(staging, model_class)
    (staging / CARD_FILENAME).write_text(model_card(facts, repo_id), encoding="utf-8")
    manifest = read_manifest(staging) if (staging / MANIFEST).is_file() else None
    _leave_out(staging, push_model=push_model, push_optimizer=push_optimizer, push_logs=push_logs)
    if manifest is not None:
        _refresh_manifest(staging, manifest)
    message = commit_message or f"Upload {facts.model_name} at step {facts.state.get('global_step', 0)} with tamrin"
    return hub.upload_folder(
        staging, repo_id, commit_message=message, private=private, revision=revision, token=token, replace=True
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


# -- the model card -------------------------------------------------------------------------------
class _RunFacts:
    """What a staged checkpoint says about its run, read from its files (never from the Trainer)."""

    def __init__(self, staging: Path, model_class: str | None) -> None:
        self.trainer_config = _read_yaml(staging / TRAIN_DIR / "trainer_config.yaml")
        self.state = _read_yaml(staging / TRAIN_DIR / "trainer_state.yaml")
        self.dataset_config = _read_yaml(staging / TRAIN_DIR / "dataset_config.yaml")
        model_config = _read_yaml(staging / "model_config.yaml")
        hf_config = _read_yaml(staging / "config.json")
        architectures = hf_config.get("architectures") or [None]
        self.model_name = str(model_config.get("name") or architectures[0] or model_class or "model")
        self.num_parameters = _count_parameters(staging / "model.safetensors")
        self.logs_csv = staging / LOGS_DIR / CSV_FILENAME

    @classmethod
    def read(cls, staging: Path, model_class: str | None = None) -> _RunFacts:
        return cls(Path(staging), model_class)

    @property
    def task(self) -> str:
        return str(self.trainer_config.get("task") or self.dataset_config.get("task") or "unknown")

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"model": self.model_name}
        if self.num_parameters is not None:
            settings["parameters"] = f"{self.num_parameters:,}"
        if self.dataset_config.get("name"):
            settings["dataset"] = self.dataset_config["name"]
        settings.update({k: self.trainer_config[k] for k in CARD_SETTINGS if self.trainer_config.get(k) is not None})
        for label, key in (("trained steps", "global_step"), ("optimizer updates", "optimizer_steps")):
            if self.state.get(key) is not None:
                settings[label] = self.state[key]
        if (self.state.get("world_size") or 1) > 1:
            settings["processes"] = self.state["world_size"]
        return settings


def model_card(facts: _RunFacts, repo_id: str) -> str:
    """The README.md of a push: `tamrin.hub.render_model_card` with the run's metrics and settings."""

    return hub.render_model_card(
        repo_id=repo_id,
        task=facts.task,
        model_name=repo_id.split("/")[-1],
        best_metrics=best_metrics(facts.logs_csv, facts.state, facts.trainer_config.get("metric_for_best_model")),
        training_settings=facts.settings(),
        library_version=__version__,
    )


def best_metrics(logs_csv: Path, state: Mapping[str, Any], metric_for_best_model: str | None) -> dict[str, float]:
    """The evaluation metrics of the best step (`state["best_step"]`), `metric_for_best_model` first.

    Without a logged row for the best step, each evaluation metric's own best over the logs is used
    (the last value for a metric whose direction is unknown); without logs, the state's best metric.

    Args:
        logs_csv: The run's training_logs.csv (may be missing).
        state: The TrainerState as a mapping (`best_step`, `best_metric`).
        metric_for_best_model: The metric `best_metric` is a value of, e.g. "evaluation.cer".
    """
    metrics: dict[str, float] = {}
    if logs_csv.is_file():
        logs = load_logs(logs_csv)
        columns = [c for c in logs.columns if c.startswith("evaluation.")]
        row = logs[logs["step"] == state.get("best_step")][columns] if columns else logs.iloc[0:0]
        if not row.empty and not row.iloc[-1].isna().all():
            metrics = {name: float(value) for name, value in row.iloc[-1].items() if not math.isnan(value)}
        elif columns:
            summary = summarize_logs(logs[["step", *columns]])
            for name, record in summary.iterrows():
                value = record["best"] if not math.isnan(record["best"]) else record["last"]
                if not math.isnan(value):
                    metrics[str(name)] = float(value)
    if metric_for_best_model and state.get("best_metric") is not None:
        metrics[metric_for_best_model] = float(state["best_metric"])
    if metric_for_best_model in metrics:
        metrics = {metric_for_best_model: metrics.pop(metric_for_best_model), **metrics}
    return metrics


def _read_yaml(path: Path) -> dict[str, Any]:
    """A YAML (or JSON) mapping as plain values; {} when the file is missing."""
    if not path.is_file():
        return {}
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return {str(key): value for key, value in data.items()} if isinstance(data, dict) else {}


def _count_parameters(weights: Path) -> int | None:
    """Elements in a safetensors file, read from its header only (tied tensors are stored once)."""
    if not weights.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as handle:
        return sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())  # noqa: SIM118
