"""Callbacks: every event fires in order, early stopping, the monitors, the registry, sampler supply."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import JOB_MODEL, REGRESSION_SETTINGS, EventRecorder, RegressionData, make_trainer

from tamrin import Trainer
from tamrin.configs import ConfigError
from tamrin.trainer.callbacks import Callback, EarlyStopping, build_callback
from tamrin.trainer.callbacks.curriculum import Curriculum, SelfPacedCurriculum
from tamrin.trainer.callbacks.monitors import GradientNormLogger, LearningRateMonitor


def _trainer(tmp_path: Path, callbacks, trainer_class=Trainer, **overrides) -> Trainer:
    """The jobs' model on 12 samples (4 to evaluate); TrainerConfig's defaults but for the learning rate and seed."""
    return make_trainer(
        tmp_path,
        train=RegressionData(12, seed=0, features=8),
        evaluation=RegressionData(4, seed=1, features=8),
        callbacks=callbacks,
        trainer_class=trainer_class,
        model_options=JOB_MODEL,
        settings=REGRESSION_SETTINGS,
        **{"learning_rate": 0.01, "seed": 5, **overrides},
    )


def test_every_event_fires_in_loop_order_the_right_number_of_times(tmp_path: Path) -> None:
    recorder = EventRecorder()
    _trainer(tmp_path, [recorder], num_epochs=2, gradient_accumulation_steps=2, log_steps=2).train()
    events = recorder.names
    assert events[:5] == ["on_train_begin", "on_epoch_begin", "on_step_begin", "on_step_end", "on_step_begin"]
    assert events[5:7] == ["on_optimizer_step", "on_step_end"]  # step 2 ends the accumulation window
    assert events[-3:] == ["on_epoch_end", "on_save", "on_train_end"]  # a checkpoint holds what on_epoch_end did
    counts = Counter(events)
    assert counts == {
        "on_train_begin": 1,
        "on_epoch_begin": 2,
        "on_step_begin": 6,
        "on_step_end": 6,
        "on_optimizer_step": 4,
        "on_log": 3 + 2,
        "on_evaluate": 2,
        "on_save": 2,
        "on_epoch_end": 2,
        "on_train_end": 1,
    }  # fmt: skip  (updates: steps 2, 3 (epoch end), 5, 6; logs: steps 2, 4, 6 + two evaluations)


class ScriptedEvaluation(Trainer):
    """Evaluation losses follow a script, one value per evaluation."""

    script = [1.0, 0.5, 0.45, 0.6, 0.7, 0.1, 0.1]

    def evaluate(self, dataset=None) -> dict[str, float]:
        self.evaluations = getattr(self, "evaluations", 0) + 1
        return {"loss": self.script[self.evaluations - 1], "mse": 0.0}


@pytest.mark.parametrize(("min_delta", "stop_epoch"), [(0.0, 5), (0.1, 4)])
def test_early_stopping_stops_at_the_right_epoch(tmp_path: Path, min_delta: float, stop_epoch: int) -> None:
    # patience 2: without min_delta the best is 0.45 (epoch 3), so epochs 4 and 5 do not improve;
    # with min_delta 0.1 the 0.45 is no improvement on 0.5, so epochs 3 and 4 do not.
    trainer = _trainer(tmp_path, [EarlyStopping(patience=2, min_delta=min_delta)], ScriptedEvaluation, num_epochs=7)
    trainer.train()
    assert trainer.evaluations == stop_epoch
    assert trainer.state.epoch == stop_epoch and trainer.state.global_step == stop_epoch * 3
    assert trainer.control.should_stop


def test_monitors_log_learning_rates_and_gradient_norms_at_log_steps(tmp_path: Path) -> None:
    norms = []

    class RecordNorm(Callback):  # the exact pre-clip norm of each update, for comparison
        def on_train_begin(self, trainer) -> None:
            def record(optimizer, args, kwargs) -> None:
                grads = [p.grad for p in trainer.unwrapped_model.parameters()]
                norms.append((trainer.state.global_step, float(torch.cat([g.flatten() for g in grads]).norm())))

            trainer.optimizer.optimizer.register_step_pre_hook(record)

    callbacks = [RecordNorm(), LearningRateMonitor(log_momentum=True), GradientNormLogger()]
    trainer = _trainer(tmp_path, callbacks, num_epochs=2, log_steps=4, optimizer="sgd", do_evaluate=False)
    trainer.train()
    logs = pd.read_csv(tmp_path / "logs" / "training_logs.csv").set_index("step")
    assert logs.index.tolist() == [4, 6]  # every 4 steps and the run's end
    assert (logs["learning_rate.group_0"] == 0.01).all() and (logs["momentum.group_0"] == 0.0).all()
    by_step = dict(norms)
    assert logs["train.grad_norm"].tolist() == pytest.approx([by_step[4], by_step[6]], rel=1e-6)


def test_gradient_norm_is_the_pre_clip_norm_and_survives_a_checkpoint(tmp_path: Path) -> None:
    logger = GradientNormLogger()
    trainer = _trainer(tmp_path, [logger], num_epochs=1, log_steps=3, max_grad_norm=1e-4, do_evaluate=False)
    trainer.train()
    logged = pd.read_csv(tmp_path / "logs" / "training_logs.csv")["train.grad_norm"]
    assert (logged > 1e-3).all()  # clipped to 1e-4, but the logged norm is the one before clipping
    logger._norm = torch.tensor(0.25)
    restored = GradientNormLogger()
    restored.load_state_dict(logger.state_dict())
    assert restored.state_dict() == {"pending_norm": 0.25}


def test_callbacks_are_registered_for_recipes() -> None:
    assert isinstance(build_callback("learning_rate_monitor", log_momentum=True), LearningRateMonitor)
    assert isinstance(build_callback("gradient_norm_logger"), GradientNormLogger)
    assert isinstance(build_callback("curriculum", scores="length", pacing="root"), Curriculum)
    assert isinstance(build_callback("self_paced_curriculum", every=2), SelfPacedCurriculum)
    with pytest.raises(ConfigError, match="`every=0` must be an int >= 1"):
        build_callback("self_paced_curriculum", every=0)


def test_only_one_callback_may_supply_the_sampler(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Several callbacks supply the training sampler"):
        _trainer(tmp_path, [Curriculum(), SelfPacedCurriculum()])
