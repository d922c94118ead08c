"""Curriculum callbacks: supply a CurriculumSampler to the Trainer, log its pacing, re-score it.

`Curriculum` gives the Trainer its training sampler (`Trainer.create_train_sampler` asks the
callbacks first), tells it the run's length, and logs the pacing at each log step as
`curriculum.fraction`, `curriculum.eligible` and `curriculum.threshold`. `SelfPacedCurriculum`
also re-scores the training data with the current model (per-sample loss; low = easy) every
`every` epochs, at the epoch's start, and keeps the scores in the checkpoint.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from tamrin.configs import ConfigError
from tamrin.datasets.sampling.curriculum import CurriculumSampler, Pacing, build_pacing, check_epoch_mode
from tamrin.trainer.callbacks.base import Callback, TrainerView
from tamrin.trainer.callbacks.registry import register_callback
from tamrin.trainer.modeling import call_model, forward_keys

__all__ = ["Curriculum", "SelfPacedCurriculum", "per_sample_loss"]


@register_callback("curriculum")
class Curriculum(Callback):
    """Train easy-to-hard: a CurriculumSampler over the training data, paced by training progress.

    Args:
        scores: difficulty per sample (low = easy): an array, a column name, or a function of one
            sample (see `tamrin.datasets.sampling.difficulty_scores`).
        pacing: "linear", "root", "step", a {"name": ..., **kwargs} mapping (`{"name": "threshold",
            "start": 0.9, "change": -0.05, "higher_is_easier": True}` admits by score, see
            ThresholdPacing), or a callable of progress in [0, 1] returning the eligible fraction.
        epoch: "full" (len(data) draws per epoch) or "admitted" (one pass over the admitted set;
            per-epoch thresholds only).
    """

    def __init__(
        self, scores: Any = None, pacing: str | Mapping[str, Any] | Pacing = "linear", epoch: str = "full"
    ) -> None:
        self.scores = scores
        self.pacing = build_pacing(pacing)
        self.epoch_mode = check_epoch_mode(epoch, self.pacing)
        self.sampler: CurriculumSampler | None = None
        self._saved_digest: str | None = None
        self._shown_eligible: int | None = None

    def create_train_sampler(self, trainer: TrainerView, dataset: Any) -> CurriculumSampler:
        """The Trainer's training sampler (called once, while the Trainer is built)."""
        config = trainer.config
        self.sampler = CurriculumSampler(
            dataset,
            config.batch_size,
            scores=self._initial_scores(dataset),
            pacing=self.pacing,
            epoch=self.epoch_mode,
            shuffle=config.dataloader_shuffle,
            seed=config.seed,
            num_replicas=trainer.accelerator.num_processes,
            rank=trainer.accelerator.process_index,
        )
        return self.sampler

    def _initial_scores(self, dataset: Any) -> Any:
        return self.scores

    def planned_epoch_steps(self) -> Callable[[int], int] | None:
        """Steps of each epoch for the Trainer's plan when they vary (epoch="admitted"), else None."""
        sampler = self.sampler
        if sampler is None or self.epoch_mode == "full":
            return None
        return sampler.steps_in_epoch

    def on_train_begin(self, trainer: TrainerView) -> None:
        if trainer.train_dataloader is None or trainer.train_dataloader.sampler is not self.sampler:
            raise ConfigError(
                f"{type(self).__name__} supplies the training sampler, but the Trainer uses "
                f"{type(getattr(trainer.train_dataloader, 'sampler', None)).__name__}: a Trainer subclass that "
                "overrides `create_train_sampler` must call super() or return a CurriculumSampler itself."
            )
        state = trainer.state  # count steps as the Trainer does from here (another world size included)
        self.sampler.set_step_anchor(state.global_step, state.epoch, state.epoch_samples)
        self.sampler.set_total_steps(trainer.plan.total_steps)

    def on_log(self, trainer: TrainerView, logs: dict[str, float]) -> None:
        if "learning_rate" not in logs or self.sampler is None:  # only the training logs
            return
        sampler = self.sampler
        step, epoch = max(trainer.state.global_step - 1, 0), sampler.epoch  # the step just trained
        eligible, threshold = sampler.eligible_count(step, epoch), sampler.threshold(step, epoch)
        values = {"curriculum.fraction": eligible / sampler.data_length, "curriculum.eligible": eligible}
        if sampler.thresholds is not None:  # the user's threshold, and how many pass it before the floor
            values["curriculum.admitted"] = sampler.admitted_count(step, epoch)
        trainer.log({**values, "curriculum.threshold": threshold}, trainer.state.global_step)
        if trainer.progress_mode == "plain" and eligible != self._shown_eligible:  # CI logs: one line per change
            self._shown_eligible = eligible
            passes = f">= {threshold:.4g}" if sampler.thresholds and sampler.thresholds.higher_is_easier else None
            print(
                f"Curriculum at step {trainer.state.global_step}: {eligible}/{sampler.data_length} samples "
                f"eligible ({'score ' + passes if passes else f'difficulty <= {threshold:.4g}'})",
                flush=True,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"scores_digest": _digest(self.sampler.scores) if self.sampler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved_digest = state["scores_digest"]

    def on_load(self, trainer: TrainerView, path: str) -> None:
        if self._saved_digest and self.sampler is not None and self._saved_digest != _digest(self.sampler.scores):
            warnings.warn(
                f"The difficulty scores differ from those of the checkpoint {path}; the current ones win, so the "
                "resumed run draws other samples than the interrupted one would have.",
                stacklevel=2,
            )


@register_callback("self_paced_curriculum")
class SelfPacedCurriculum(Curriculum):
    """A curriculum whose difficulty is the current model's per-sample loss, re-scored every `every` epochs.

    Scoring runs at the start of epochs 0, `every`, 2 * `every`, ... (epoch 0 only without initial
    `scores`), in eval mode without gradients, and never draws from a random generator, so a
    resumed run scores the same weights to the same numbers. The scores are saved in checkpoints.

    Args:
        every: re-score every this many epochs.
        pacing: as for Curriculum.
        scores: initial difficulty (as for Curriculum); None scores with the initial model.
        loss_fn: `fn(outputs, batch) -> Tensor[batch]` per-sample losses; default: the Trainer's
            `compute_loss` when it returns one loss per sample, else cross-entropy (integer labels) or
            squared error (float labels) of the outputs' `logits` (see `per_sample_loss`).
        batch_size: scoring batch size (default: the eval batch size, else the batch size).
    """

    def __init__(
        self,
        every: int = 1,
        pacing: str | Mapping[str, Any] | Pacing = "linear",
        scores: Any = None,
        loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
        batch_size: int | None = None,
        epoch: str = "full",
    ) -> None:
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"`every={every!r}` must be an int >= 1 (epochs between re-scorings).")
        super().__init__(scores, pacing, epoch)
        self.every = every
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.last_scored_epoch: int | None = None
        self._warned_bound = False

    def _initial_scores(self, dataset: Any) -> Any:
        if self.scores is None:
            return None
        self.last_scored_epoch = 0  # the given scores stand for epoch 0's scoring
        return self.scores

    def planned_epoch_steps(self) -> Callable[[int], int] | None:
        """With epoch="admitted" the lengths depend on the model's losses: the plan takes the full-length bound.

        The run still trains `num_epochs` epochs, each over what its threshold admits; the LR
        schedule decays over the bound, so it ends above its final value. The warning says so.
        """
        sampler = self.sampler
        if sampler is None or self.epoch_mode == "full":
            return None
        if not self._warned_bound:  # once: a resume plans again
            self._warned_bound = True
            warnings.warn(
                "SelfPacedCurriculum with epoch='admitted': each epoch's length depends on the model's losses, so "
                f"it cannot be known up front. The step plan, progress bar and LR schedule use the full-length bound "
                f"({sampler.full_epoch_steps} steps/epoch); epochs end earlier, so the LR schedule does not reach its "
                "end. Use epoch='full' (fixed-length epochs) for a schedule that ends with the run.",
                stacklevel=2,
            )
        return lambda epoch: sampler.full_epoch_steps

    def on_epoch_begin(self, trainer: TrainerView) -> None:
        epoch = trainer.state.epoch
        if epoch % self.every or epoch == self.last_scored_epoch:
            return
        if self.sampler is None:
            raise RuntimeError(f"{type(self).__name__} has no sampler: the Trainer did not ask it for one.")
        self.sampler.set_scores(self.score(trainer))
        self.last_scored_epoch = epoch

    @torch.inference_mode()
    def score(self, trainer: TrainerView) -> np.ndarray:
        """Each training sample's loss under the current model; processes score a shard each."""
        dataset, model = trainer.train_dataset, trainer.unwrapped_model
        world, rank = trainer.accelerator.num_processes, trainer.accelerator.process_index
        size = len(dataset)
        per_rank = math.ceil(size / world)
        indices = [(rank + j * world) % size for j in range(per_rank)]  # strided; wraps to pad the last
        loader = DataLoader(
            Subset(dataset, indices),
            batch_size=self.batch_size or trainer.config.eval_batch_size or trainer.config.batch_size,
            collate_fn=trainer.data_collator,
            generator=torch.Generator(),  # iterating never draws from the global RNG
        )
        was_training, keys = model.training, forward_keys(model)
        model.eval()
        try:
            losses = []
            for batch in loader:
                batch = trainer.prepare_input_batch(batch)
                losses.append(per_sample_loss(trainer, call_model(model, batch, keys), batch, self.loss_fn))
        finally:
            model.train(was_training)
        local = torch.cat(losses).double()
        if world > 1:  # rank r's j-th score is sample r + j * world
            local = trainer.accelerator.gather(local).view(world, per_rank).t().reshape(-1)
        return local[:size].cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        scores = None if self.sampler is None else torch.from_numpy(self.sampler.scores.copy())
        return {"scores": scores, "last_scored_epoch": self.last_scored_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_scored_epoch = state["last_scored_epoch"]
        if state["scores"] is not None and self.sampler is not None:
            self.sampler.set_scores(state["scores"])

    def on_load(self, trainer: TrainerView, path: str) -> None:
        """The saved scores were restored by `load_state_dict` (nothing to compare)."""


def per_sample_loss(trainer: TrainerView, outputs: Any, batch: Any, loss_fn: Callable | None = None) -> torch.Tensor:
    """One loss per sample of `batch`, as a float tensor of shape [batch] (see SelfPacedCurriculum).

    Raises:
        ConfigError: no way to get per-sample losses; the message says how to provide them.
    """
    if loss_fn is not None:
        losses = loss_fn(outputs, batch)
    else:
        losses = trainer.compute_loss(outputs, batch)
        if losses.dim() == 0:
            losses = _loss_from_logits(outputs, batch)
    return losses.reshape(losses.shape[0], -1).float().mean(dim=1) if losses.dim() > 1 else losses.float()


def _loss_from_logits(outputs: Any, batch: Any) -> torch.Tensor:
    logits = outputs if isinstance(outputs, torch.Tensor) else None
    if isinstance(outputs, Mapping):
        logits = outputs.get("logits")
    elif logits is None:
        logits = getattr(outputs, "logits", None)
    labels = batch.get("labels") if isinstance(batch, Mapping) else None
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ConfigError(
            "SelfPacedCurriculum needs one loss per sample: `compute_loss` returned a scalar and the outputs have "
            "no `logits` (or the batch no `labels`) to compute one. Pass `loss_fn=fn(outputs, batch)` returning a "
            "tensor of shape [batch], or make `compute_loss` return per-sample losses."
        )
    if labels.is_floating_point():
        return torch.nn.functional.mse_loss(logits.reshape(labels.shape).float(), labels.float(), reduction="none")
    losses = torch.nn.functional.cross_entropy(logits.float().movedim(-1, 1), labels, reduction="none")
    if losses.dim() == 1:
        return losses
    valid = (labels != -100).reshape(labels.shape[0], -1)  # token tasks: the mean over labelled tokens
    return losses.reshape(labels.shape[0], -1).sum(dim=1) / valid.sum(dim=1).clamp(min=1)


def _digest(scores: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(scores).tobytes()).hexdigest()[:16]
