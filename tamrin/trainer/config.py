"""TrainerConfig: every setting of a training run, validated up front.

Hezar's fields keep Hezar's meaning; the extras (max_grad_norm, warmup_steps, eval_steps,
save_total_limit, load_best_model_at_end, early_stopping_patience, compile, nan_policy, progress)
follow HF Trainer where it has the same idea. Step counts given as a float in (0, 1] are fractions
of the run's total steps; `resolve_steps` turns them into integers. The Trainer keeps the resolved
values in its own attributes and never rewrites the config the user gave.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from tamrin.configs import Config, check_choice, check_range
from tamrin.metrics_handlers import available_tasks
from tamrin.trainer.optim import LR_SCHEDULERS, OPTIMIZERS, check_optimizer_kwargs
from tamrin.trainer.peer_names import peer_name_problem

MAX_WORKERS = 256
"""More DataLoader workers than this is a typo (100000 started the out-of-memory killer)."""

__all__ = [
    "MAX_WORKERS",
    "TrainerConfig",
    "resolve_steps",
    "MIXED_PRECISION_CHOICES",
    "NAN_POLICIES",
    "PROGRESS_CHOICES",
    "STRATEGY_CHOICES",
]

MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16", "fp8")
NAN_POLICIES = ("stop", "skip")
PROGRESS_CHOICES = ("auto", "bar", "plain", "none")
STRATEGY_CHOICES = ("auto", "ddp", "fsdp")


@dataclass
class TrainerConfig(Config):
    """Configuration of a `Trainer` run.

    Attributes:
        task: the task, which picks the metrics handler (e.g. "text_classification", "image2text").
        output_dir: where checkpoints, logs and the final model are written.
        device: "auto" (accelerate picks cuda/mps/cpu), "cpu", "cuda", "cuda:N" or "mps".
        num_epochs: number of passes over the training data.
        init_weights_from: a local model directory or Hub repo id to load initial weights from.
        resume_from_checkpoint: True resumes from the latest valid checkpoint in output_dir
            (starts fresh if there is none); a path resumes from that checkpoint; None/False don't.
        overwrite_output_dir: a fresh run in an output_dir holding another run's checkpoints first
            deletes them and its logs; False (the default) refuses to start instead.
        max_steps: stop after this many steps (an int, or a float in (0, 1] of the total steps).
        num_dataloader_workers: DataLoader worker processes (0 loads data in the main process).
        dataloader_shuffle: shuffle the training data, in a new order each epoch.
        seed: the seed of every random number generator and of the data order.
        optimizer: "adam", "adamw" or "sgd" (ignored when an optimizer is passed to the Trainer).
        learning_rate: the optimizer's (peak) learning rate.
        weight_decay: the optimizer's weight decay.
        optimizer_kwargs: more keyword arguments of the torch optimizer, e.g. {"fused": True} (AdamW's
            fused kernel; with an fp16 GradScaler it also removes the scaler's host sync per update) or
            {"betas": [0.9, 0.95]}; learning_rate and weight_decay have their own fields.
        lr_scheduler: a scheduler name from `tamrin.trainer.optim.LR_SCHEDULERS`, or None.
        lr_scheduler_kwargs: keyword arguments of the torch scheduler.
        lr_scheduling_steps: how often Hezar's epoch-style schedulers (step, multi_step, exponential,
            cosine_annealing) step, in training steps (None: once per epoch, as Hezar). Warmup and
            other per-update schedules step after every update whatever it is; reduce_on_plateau after
            each evaluation, on metric_for_best_model.
        batch_size: training samples per step and per process.
        eval_batch_size: evaluation samples per batch and per process (None: batch_size).
        gradient_accumulation_steps: steps whose gradients add up to one optimizer update.
        distributed: expect a multi-process launch (torchrun / accelerate launch); checked at start.
        mixed_precision: None, "no", "fp16", "bf16" or "fp8" (accelerate's autocast and scaler).
        use_cpu: force the CPU even when an accelerator is available.
        do_evaluate: evaluate on the eval dataset (at each epoch end, or every eval_steps).
        evaluate_with_generate: evaluate with the model's `generate` (generative tasks).
        metrics: metric names, or mappings with options ({"name": "f1", "average": "macro"}).
        metric_for_best_model: the logged metric that picks the best checkpoint (a plain name or
            HF's `eval_` name means the evaluation metric: "cer" and "eval_cer" are "evaluation.cer"), e.g.
            "evaluation.f1" or "evaluation.loss".
        save_steps: save a checkpoint every this many steps (int or fraction; None: each epoch end).
        log_steps: log train loss and learning rate every this many steps (int or fraction).
        checkpoints_dir: checkpoint folder, relative to output_dir (it may not lead outside it).
        logs_dir: CSV and TensorBoard folder, relative to output_dir (it may not lead outside it).
        max_grad_norm: clip the gradient norm to this value before each update (None: no clipping).
        warmup_steps: linear warmup of the learning rate, in optimizer updates (int or fraction).
        eval_steps: evaluate every this many steps (int or fraction; None: each epoch end).
        save_total_limit: keep at most this many checkpoints (the newest and the best always stay).
        load_best_model_at_end: load the best checkpoint's weights when training ends.
        early_stopping_patience: stop after this many evaluations without improvement (None: off).
        early_stopping_min_delta: the smallest change of metric_for_best_model that counts.
        compile: wrap the model with torch.compile.
        nan_policy: on a NaN/inf loss, "stop" training (with the step and batch) or "skip" the update.
        progress: "auto" (a bar on a terminal, plain lines otherwise), "bar", "plain" or "none".
        label_names: the batch keys that hold the targets (HF's name; None: "labels"); the metrics
            read the first.
        strategy: how several processes share the model: "auto" and "ddp" replicate it (accelerate's
            DDP); "fsdp" shards parameters, gradients and optimizer state over the processes (torch's
            FSDP2 `fully_shard`) and writes sharded checkpoints (torch.distributed.checkpoint). See
            docs/distributed.md.
        fsdp_shard_modules: with strategy="fsdp", the class names of the modules sharded one by one
            (each gathers its parameters only while it runs), e.g. ["Block"] or ["LlamaDecoderLayer"];
            None: the model's `_no_split_modules` (transformers' list of its layer classes), else the
            items of its repeated `nn.ModuleList`s (a Transformer's blocks). The rest is sharded with
            the root module.
        remove_unused_columns: drop the columns of a Hugging Face `datasets.Dataset` that the model's
            `forward` does not name (and that are not label_names) before collation, as HF does.
    """

    config_filename = "trainer_config.yaml"

    task: str = "text_classification"
    output_dir: str = "outputs"
    device: str = "auto"
    num_epochs: int = 1
    init_weights_from: str | None = None
    resume_from_checkpoint: bool | str | None = None
    overwrite_output_dir: bool = False
    max_steps: int | float | None = None
    num_dataloader_workers: int = 0
    dataloader_shuffle: bool = True
    seed: int = 42
    optimizer: str = "adam"
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    lr_scheduler: str | None = None
    lr_scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    lr_scheduling_steps: int | None = None
    batch_size: int = 8
    eval_batch_size: int | None = None
    gradient_accumulation_steps: int = 1
    distributed: bool = False
    mixed_precision: str | None = None
    use_cpu: bool = False
    do_evaluate: bool = True
    evaluate_with_generate: bool = False
    metrics: list[Any] = field(default_factory=list)
    metric_for_best_model: str = "evaluation.loss"
    save_steps: int | float | None = None
    log_steps: int | float | None = 50
    checkpoints_dir: str = "checkpoints"
    logs_dir: str = "logs"
    max_grad_norm: float | None = None
    warmup_steps: int | float = 0
    eval_steps: int | float | None = None
    save_total_limit: int | None = None
    load_best_model_at_end: bool = False
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    compile: bool = False
    nan_policy: str = "stop"
    progress: str = "auto"
    label_names: list[str] | None = None
    remove_unused_columns: bool = True
    strategy: str = "auto"
    fsdp_shard_modules: list[str] | None = None

    def validate(self) -> list[str | None]:
        return [
            _check_name("task", self.task, available_tasks()),
            _check_output_dir(self.output_dir),
            _check_device(self.device),
            check_range("num_epochs", self.num_epochs, minimum=1),
            _check_step_value("max_steps", self.max_steps, optional=True),
            check_range("num_dataloader_workers", self.num_dataloader_workers, minimum=0, maximum=MAX_WORKERS),
            check_range("seed", self.seed, minimum=0, maximum=2**32 - 1),  # numpy's seed range
            _check_name("optimizer", self.optimizer, OPTIMIZERS.names()),
            check_range("learning_rate", self.learning_rate, minimum=0, exclusive_minimum=True),
            None if math.isfinite(self.learning_rate) else f"`learning_rate={self.learning_rate!r}` must be finite.",
            check_range("weight_decay", self.weight_decay, minimum=0),
            check_optimizer_kwargs(self.optimizer, self.optimizer_kwargs),
            None
            if self.lr_scheduler is None
            else _check_name("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS.names()),
            check_range("lr_scheduling_steps", self.lr_scheduling_steps, minimum=1, optional=True),
            check_range("batch_size", self.batch_size, minimum=1),
            check_range("eval_batch_size", self.eval_batch_size, minimum=1, optional=True),
            check_range("gradient_accumulation_steps", self.gradient_accumulation_steps, minimum=1),
            check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION_CHOICES, optional=True),
            _check_metric_name(self.metric_for_best_model),
            _check_step_value("save_steps", self.save_steps, optional=True),
            _check_subfolder("checkpoints_dir", self.checkpoints_dir),
            _check_subfolder("logs_dir", self.logs_dir),
            _check_step_value("log_steps", self.log_steps, optional=True),
            _check_step_value("eval_steps", self.eval_steps, optional=True),
            _check_step_value("warmup_steps", self.warmup_steps, optional=True, allow_zero=True),
            check_range("max_grad_norm", self.max_grad_norm, minimum=0, exclusive_minimum=True, optional=True),
            check_range("save_total_limit", self.save_total_limit, minimum=1, optional=True),
            check_range("early_stopping_patience", self.early_stopping_patience, minimum=1, optional=True),
            check_range("early_stopping_min_delta", self.early_stopping_min_delta, minimum=0),
            check_choice("nan_policy", self.nan_policy, NAN_POLICIES),
            check_choice("progress", self.progress, PROGRESS_CHOICES),
            _check_metrics_list(self.metrics),
            _check_label_names(self.label_names),
            check_choice("strategy", self.strategy, STRATEGY_CHOICES),
            _check_shard_modules(self.fsdp_shard_modules),
            _check_fsdp_settings(self.strategy, self.mixed_precision, self.compile),
        ]


def _check_output_dir(output_dir: str) -> str | None:
    """A path that exists must be a folder: a file (or `/dev/null`) fails later with a raw OSError."""
    if not output_dir:
        return "`output_dir` must be a non-empty path."
    path = os.fspath(output_dir)
    existing = next((p for p in (path, *map(str, PurePath(path).parents)) if os.path.lexists(p)), None)
    if existing is not None and not os.path.isdir(existing):
        where = "is" if existing == path else f"is under {existing!r}, which is"
        return f"`output_dir={output_dir!r}` {where} a file, not a folder: pick a folder path for the run."
    return None


def _check_label_names(names: list[str] | None) -> str | None:
    if names is None or (names and all(isinstance(name, str) and name for name in names)):
        return None
    return f"`label_names={names!r}` must be a non-empty list of batch keys, e.g. ['labels'], or None."


def _check_fsdp_settings(strategy: str, mixed_precision: str | None, compile: bool) -> str | None:
    if strategy != "fsdp":
        return None
    if mixed_precision in ("fp16", "fp8"):
        return (
            f"`mixed_precision={mixed_precision!r}` is not supported with strategy='fsdp' (no sharded gradient "
            "scaler). Valid choices with FSDP: 'no', 'bf16'."
        )
    if compile:
        return "`compile=True` is not supported with strategy='fsdp' yet: set compile=false or strategy='auto'."
    return None


def _check_shard_modules(names: list[str] | None) -> str | None:
    if names is None or all(isinstance(name, str) and name for name in names):
        return None
    return f"`fsdp_shard_modules={names!r}` must be a list of module class names, e.g. ['Block'], or None."


def _check_device(device: str) -> str | None:
    base = device.split(":")[0]
    if base in ("auto", "cpu", "cuda", "mps", "xpu", "npu") and (base == device or device.split(":")[1].isdigit()):
        return None
    return f"`device={device!r}` is not a valid device. Valid: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps', 'xpu', 'npu'."


def _check_step_value(
    name: str, value: int | float | None, *, optional: bool = False, allow_zero: bool = False
) -> str | None:
    if value is None:
        return None if optional else f"`{name}` is required."
    if isinstance(value, bool):
        return f"`{name}={value!r}` must be an int >= 1 or a float in (0, 1]."
    if isinstance(value, int):
        if value >= 1 or (allow_zero and value == 0):
            return None
        low = 0 if allow_zero else 1
        return f"`{name}={value!r}` must be an int >= {low} or a float in (0, 1] (a fraction of the total steps)."
    if 0.0 < value <= 1.0:
        return None
    return (
        f"`{name}={value!r}` must be an int >= 1 or a float in (0, 1] (a fraction of the total steps); "
        f"write {int(value)} for a step count."
        if value > 1 and float(value).is_integer()
        else f"`{name}={value!r}` must be an int >= 1 or a float in (0, 1] (a fraction of the total steps)."
    )


def _check_subfolder(name: str, value: str) -> str | None:
    """A folder strictly inside output_dir: no absolute path, no `..` out of it, not output_dir itself.

    Not output_dir itself: rotation and `overwrite_output_dir` delete inside these folders.
    """
    path = PurePath(value)
    normal = os.path.normpath(value) if value else "."
    if path.is_absolute() or value.startswith("~") or normal == "." or normal.split(os.sep)[0] == "..":
        return (
            f"`{name}={value!r}` must be a folder inside output_dir, given relative to it (e.g. "
            f"{'checkpoints' if name == 'checkpoints_dir' else 'logs'!r}): absolute paths, `~`, `..` out of it "
            "and output_dir itself are refused so that no config can write (or clear) outside its own folder. "
            "To write elsewhere, move output_dir."
        )
    return None


def _check_name(field: str, value: Any, valid: list[str]) -> str | None:
    """A registered name; a Hezar name tamrin lacks is said to be one (no misleading "did you mean")."""
    return check_choice(field, value, valid) and (
        peer_name_problem(field, value, valid) or check_choice(field, value, valid)
    )


def _check_metric_name(name: str) -> str | None:
    """A logged name ("evaluation.f1", "train.loss"), or Hezar's / HF's plain and `eval_` names ("f1", "eval_f1")."""
    prefix, dot, metric = name.partition(".")
    if (dot and prefix in ("evaluation", "train") and metric) or (not dot and name.removeprefix("eval_")):
        return None
    return (
        f"`metric_for_best_model={name!r}` must name a logged metric: 'evaluation.<metric>' or 'train.loss' "
        "(a plain 'f1' or HF's 'eval_f1' means 'evaluation.f1')."
    )


def _check_metrics_list(metrics: list[Any]) -> str | None:
    for index, metric in enumerate(metrics):
        if isinstance(metric, str):
            continue
        if isinstance(metric, dict) and isinstance(metric.get("name"), str):
            continue
        return (
            f"`metrics[{index}]={metric!r}` must be a metric name or a mapping with a `name` key, "
            "e.g. 'accuracy' or {'name': 'f1', 'average': 'macro'}."
        )
    return None


def resolve_steps(value: int | float | None, total_steps: int, name: str = "steps") -> int | None:
    """Resolve a step setting: an int is a step count; a float in (0, 1] a fraction of `total_steps`.

    Fractions round up (a fraction never resolves to 0 steps), as in HF Trainer. The product is
    first rounded to 9 decimals, so float error does not round up a whole number of steps
    (0.07 * 100 is 7.000000000000001 in floating point, and must give 7, not 8).

    Args:
        value: the configured value (None passes through as None).
        total_steps: the total number of steps of the run.
        name: the config field, for the error message.

    Returns:
        The number of steps, or None.

    Raises:
        ValueError: `value` is neither an int >= 0 nor a float in (0, 1].
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}={value!r}` must be an int or a float in (0, 1].")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"`{name}={value!r}` must be >= 0.")
        return value
    if not 0.0 < value <= 1.0:
        raise ValueError(f"`{name}={value!r}` must be a float in (0, 1] when it is a fraction.")
    return max(1, math.ceil(round(value * total_steps, 9)))
