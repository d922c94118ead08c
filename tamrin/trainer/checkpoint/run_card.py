"""The model card of a pushed run: what its staged files say about the run, rendered by `tamrin.hub`.

`RunFacts` reads a staged checkpoint (never the Trainer), so `Trainer.push_to_hub` and `tamrin push`
write the same card for the same files: the task, the best evaluation metrics and the main settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from safetensors import safe_open

from tamrin import hub
from tamrin.trainer.checkpoint.files import TRAIN_DIR
from tamrin.trainer.checkpoint.state_files import LOGS_DIR
from tamrin.trainer.logs.logger import CSV_FILENAME, load_logs
from tamrin.trainer.logs.review import summarize_logs
from tamrin.version import __version__

__all__ = ["CARD_FILENAME", "CARD_SETTINGS", "RunFacts", "best_metrics", "model_card"]

CARD_FILENAME = "README.md"
CARD_SETTINGS = (
    "optimizer", "learning_rate", "weight_decay", "lr_scheduler", "warmup_steps", "batch_size",
    "gradient_accumulation_steps", "num_epochs", "max_steps", "max_grad_norm", "mixed_precision", "seed",
    "metric_for_best_model",
)  # fmt: skip


class RunFacts:
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
    def read(cls, staging: Path, model_class: str | None = None) -> RunFacts:
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


def model_card(facts: RunFacts, repo_id: str) -> str:
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
    with safe_open(str(weights), framework="pt") as handle:
        return sum(math.prod(handle.get_slice(name).get_shape()) for name in handle.keys())  # noqa: SIM118
