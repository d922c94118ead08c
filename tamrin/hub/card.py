"""The model card (README.md) of a model trained with tamrin: Hub metadata, metrics, settings, how to load."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCardData

__all__ = ["render_model_card"]


def render_model_card(
    *,
    repo_id: str,
    task: str,
    model_name: str,
    best_metrics: Mapping[str, float],
    training_settings: Mapping[str, Any],
    library_version: str,
) -> str:
    """Render a README.md (model card) for a model trained with tamrin.

    Args:
        repo_id: The repo the card is for (used in the loading snippet).
        task: The task, e.g. "text_classification"; it becomes a tag.
        model_name: Title of the card.
        best_metrics: Best evaluation metrics, name to value, in display order.
        training_settings: Main training settings, name to value, in display order.
        library_version: The tamrin version that trained the model.

    Returns:
        The card: YAML front matter (library_name, tags), the metrics and settings tables and a
        snippet that loads the model.
    """
    metadata = ModelCardData(library_name="tamrin", tags=list(dict.fromkeys(["tamrin", task])))
    lines = [f"---\n{metadata.to_yaml()}\n---", "", f"# {model_name}", ""]
    lines += [f"This model was trained with tamrin {library_version} for the `{task}` task.", ""]
    lines += ["## Evaluation results (best)", ""]
    if best_metrics:
        lines += _table(("Metric", "Value"), [(name, f"{float(value):.4f}") for name, value in best_metrics.items()])
    else:
        lines.append("No evaluation was run.")
    lines += ["", "## Training settings", ""]
    lines += _table(("Setting", "Value"), [(name, _format_value(value)) for name, value in training_settings.items()])
    lines += ["", "## How to load", "", "```python", "from tamrin.models import Model", ""]
    lines += [f'model = Model.load("{repo_id}")', "```", ""]
    return "\n".join(lines)


def _table(header: tuple[str, str], rows: list[tuple[str, str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    return [f"| {header[0]} | {header[1]} |", "| --- | --- |"] + [f"| {cell(k)} | {cell(v)} |" for k, v in rows]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return format(value, ".6g")
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(item) for item in value) or "-"
    return "-" if value is None else str(value)
