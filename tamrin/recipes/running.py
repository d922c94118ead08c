"""Run a recipe: train it and save the final model, evaluate a trained model, find a run's files.

This is what `tamrin train` and `tamrin evaluate` do; it is importable so that a script can run a
recipe too. Building the Trainer a recipe describes is building.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tamrin.configs import atomic_write_text, plain_dict
from tamrin.models import Model, ModelConfig
from tamrin.recipes.building import build_trainer
from tamrin.recipes.loading import build_section_dataset, dataset_spec
from tamrin.trainer.callbacks import Callback, TrainerView
from tamrin.trainer.config import TrainerConfig
from tamrin.trainer.trainer import Trainer

__all__ = [
    "train_from_recipe",
    "evaluate_from_recipe",
    "find_run_recipe",
    "resolve_model_dir",
    "save_recipe",
    "FINAL_MODEL_DIR",
    "RECIPE_FILENAME",
]

FINAL_MODEL_DIR = "model"
RECIPE_FILENAME = "recipe.yaml"


def train_from_recipe(recipe: DictConfig | dict[str, Any]) -> dict[str, float]:
    """Train a recipe, save the final model, and print where everything is and the best metric."""
    trainer = build_trainer(recipe)
    trainer.add_callback(SaveRecipeAtStart(recipe))
    logs = trainer.train()
    final = trainer.save(Path(trainer.config.output_dir) / FINAL_MODEL_DIR)
    if trainer.is_main_process:
        print(summary(trainer, logs, final))
    # every process leaves the process group together: a gloo group torn down by interpreter exit
    # while another rank still uses it can abort that rank at the very end of a good run
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return logs


class SaveRecipeAtStart(Callback):
    """Writes recipe.yaml when training begins: after the run holds its output_dir and passed the
    fresh-run check, so a refused run never overwrites the recipe of the run it would have clobbered."""

    def __init__(self, recipe: DictConfig | dict[str, Any]) -> None:
        self.recipe = recipe

    def on_train_begin(self, trainer: TrainerView) -> None:
        if trainer.accelerator.is_main_process:
            save_recipe(self.recipe, Path(trainer.config.output_dir))


def save_recipe(recipe: DictConfig | dict[str, Any], output_dir: Path) -> Path:
    """Keep the resolved recipe beside the run, so `tamrin evaluate` can rebuild its data later."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RECIPE_FILENAME
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(recipe)))
    return path


def resolve_model_dir(path: Path) -> Path:
    """The directory holding model_config.yaml: `path` itself (a model or checkpoint), or a run's final `model/`."""
    for candidate in (path, path / FINAL_MODEL_DIR):
        if (candidate / ModelConfig.config_filename).is_file():
            return candidate
    raise FileNotFoundError(
        f"No {ModelConfig.config_filename} in {path} or {path / FINAL_MODEL_DIR}: pass a model or checkpoint "
        "directory written by tamrin, or a run's output_dir (e.g. outputs/plates-crnn)."
    )


def find_run_recipe(directory: Path) -> Path:
    """The recipe.yaml of the run a model/checkpoint directory belongs to (it or a parent holds it)."""
    for candidate in [directory, *directory.resolve().parents][:4]:
        if (candidate / RECIPE_FILENAME).is_file():
            return candidate / RECIPE_FILENAME
    raise FileNotFoundError(
        f"No {RECIPE_FILENAME} in {directory} or its parents: evaluate a directory written by `tamrin train`, "
        "or pass the recipe instead: `tamrin evaluate RECIPE.yaml`."
    )


def evaluate_from_recipe(
    recipe: DictConfig | dict[str, Any], model_dir: Path | None = None, split: str | None = None
) -> dict[str, float]:
    """Evaluate the model in `model_dir` (default: the recipe's final model) on its eval data."""
    if isinstance(recipe, DictConfig):
        recipe = plain_dict(recipe)
    config = TrainerConfig.from_dict({**recipe["trainer"], "resume_from_checkpoint": None, "init_weights_from": None})
    model_dir = Path(model_dir) if model_dir is not None else Path(config.output_dir) / FINAL_MODEL_DIR
    if not model_dir.is_dir():
        raise FileNotFoundError(f"No trained model at {model_dir}: train the recipe first (`tamrin train`).")
    spec, default_split = dataset_spec(recipe, "eval_dataset" if recipe.get("eval_dataset") else "dataset")
    model = Model.load(model_dir)
    dataset = build_section_dataset(spec, split or default_split, preprocessor=model.preprocessor)
    trainer = Trainer(model=model, config=config, eval_dataset=dataset)
    return trainer.evaluate()


def summary(trainer: Any, logs: dict[str, float], final: Path) -> str:
    """The closing lines of a run: the best metric, the final metrics, and where files are."""
    config = trainer.config
    state = trainer.state
    lines = ["", "Training finished."]
    if state.best_metric is not None:
        lines.append(f"  best {config.metric_for_best_model}: {state.best_metric:.4f} (step {state.best_step})")
    shown = {k: v for k, v in logs.items() if k.startswith("evaluation.") or k == "train.loss"}
    if shown:
        lines.append("  last logs: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())))
    lines.append(f"  model:       {final}")
    lines.append(f"  checkpoints: {trainer.checkpoints_dir}")
    lines.append(f"  logs:        {trainer.logs_dir} (training_logs.csv, TensorBoard events)")
    return "\n".join(lines)
