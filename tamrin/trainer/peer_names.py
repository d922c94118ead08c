"""Names from Hezar's configs that tamrin does not take, and what to write instead.

Hezar users port their configs by name. Where Hezar has a task, optimizer or scheduler that tamrin
lacks (or spells differently), the config error says so plainly instead of suggesting a
similar-looking name that means something else (`sequential` is not `exponential`).
"""

from __future__ import annotations

__all__ = ["HEZAR_NAMES", "peer_name_problem"]

_OWN_SCHEDULER = "build it yourself and pass it as `Trainer(lr_scheduler=...)`"

HEZAR_NAMES: dict[str, dict[str, str]] = {
    "task": {
        name: "tamrin has no metrics handler for it; register one with @register_metrics_handler (docs/metrics.md)"
        for name in ("audio_classification", "backbone", "language_modeling", "mask_filling", "text_detection")
    },
    "lr_scheduler": {
        "lambda": f"torch's LambdaLR needs a Python function: {_OWN_SCHEDULER}",
        "sequential": f"torch's SequentialLR needs a list of schedulers: {_OWN_SCHEDULER}",
        "cosine_anealing": "Hezar's spelling of torch's CosineAnnealingLR; tamrin's name is 'cosine_annealing'",
    },
    "optimizer": {"sdg": "Hezar's spelling of SGD; tamrin's name is 'sgd'"},
}
"""Per config field: a Hezar name tamrin does not take, and what to do instead."""


def peer_name_problem(field: str, value: object, valid: list[str]) -> str | None:
    """The error for a Hezar name tamrin does not support (None when `value` is not one)."""
    note = HEZAR_NAMES.get(field, {}).get(value) if isinstance(value, str) else None
    if note is None:
        return None
    shown = ", ".join(repr(name) for name in valid)
    return f"`{field}={value!r}` is a Hezar name that tamrin does not support: {note}. Valid choices: {shown}."
