"""Collators: a list of dataset items (dicts of tensors) -> one batch (a dict of tensors).

Lengths a model needs on the host (a packed RNN's, CTC's) also travel as plain lists of ints: the
Trainer moves every tensor of a batch to the device and leaves lists where they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tamrin.preprocessors.padding import pad_sequences, pad_token_ids

__all__ = ["CTCCollator", "ImageCollator", "TextCollator", "TokenLabelCollator", "pad_sequences"]


def _check_items(items: Sequence[dict[str, Any]], required: Sequence[str], collator: str) -> None:
    if not items:
        raise ValueError(f"{collator} got an empty list of items.")
    for key in required:
        if any(key not in item for item in items):
            raise KeyError(f"{collator}: every item needs a {key!r} entry; got keys {sorted(items[0])}.")


def _stack(items: Sequence[dict[str, Any]], key: str, collator: str) -> torch.Tensor:
    tensors = [torch.as_tensor(item[key]) for item in items]
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise ValueError(
            f"{collator}: {key!r} must have one shape across the batch to be stacked, got {sorted(shapes)}."
        )
    return torch.stack(tensors)


class ImageCollator:
    """Stack `pixel_values` (B, C, H, W); stack `labels`, or pad them when their lengths differ.

    Scalar labels (classification) become a (B,) tensor. Sequence labels of one length are
    stacked to (B, S); of different lengths, right-padded with `label_pad_value` to (B, S_max)
    plus `label_lengths` (B,). Other tensor entries of the items are stacked; non-tensor entries
    (e.g. strings) are dropped, so the batch stays a dict of tensors.
    """

    def __init__(self, label_pad_value: int = -100) -> None:
        self.label_pad_value = label_pad_value

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        name = type(self).__name__
        _check_items(items, ["pixel_values"], name)
        batch = {"pixel_values": _stack(items, "pixel_values", name)}
        if "labels" in items[0]:
            labels = [torch.as_tensor(item["labels"]) for item in items]
            if len({tuple(label.shape) for label in labels}) == 1:
                batch["labels"] = torch.stack(labels)
            else:
                batch["labels"], batch["label_lengths"] = pad_sequences(labels, self.label_pad_value)
        for key, value in items[0].items():
            if key not in batch and isinstance(value, torch.Tensor):
                batch[key] = _stack(items, key, name)
        return batch


class CTCCollator:
    """Batch for CTC: stacked images and padded labels with their lengths.

    Output:
        pixel_values: (B, 1, H, W) float32, stacked.
        labels: (B, S_max) int64, right-padded with 0. 0 is the CTC blank, never a real character,
            so padding cannot be mistaken for text; `torch.nn.CTCLoss` accepts this padded (N, S)
            form and reads only the first `label_lengths[i]` entries of row i.
        label_lengths: (B,) int64, the true length of each label sequence.
        target_lengths: the same lengths as a list of ints. A list stays on the host when the batch
            moves to the device, so the CTC loss reads it there instead of copying `label_lengths`
            back from the device (a host sync on a GPU).
    """

    pad_value = 0

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        name = type(self).__name__
        _check_items(items, ["pixel_values", "labels"], name)
        labels = [torch.as_tensor(item["labels"], dtype=torch.long).reshape(-1) for item in items]
        padded, lengths = pad_sequences(labels, self.pad_value)
        return {
            "pixel_values": _stack(items, "pixel_values", name),
            "labels": padded,
            "label_lengths": lengths,
            "target_lengths": lengths.tolist(),
        }


class TextCollator:
    """Batch for text classification: padded token ids, their attention mask, stacked labels.

    Output:
        input_ids: (B, L_max) int64, right-padded with `pad_id`.
        attention_mask: (B, L_max) int64, 1 on real tokens, 0 on padding.
        lengths: the real tokens of each row, a list of ints. A list stays on the host when the
            batch moves to the device, so a packed RNN reads it there instead of copying the mask's
            sums back from the device (a host sync on a GPU).
        labels: (B,) int64 class ids, when the items have labels (not for raw-text prediction).
    """

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        name = type(self).__name__
        _check_items(items, ["input_ids"], name)
        batch = self.pad_inputs(items)
        if "labels" in items[0]:
            batch["labels"] = self.collate_labels(items, batch["input_ids"].shape[1])
        return batch

    def pad_inputs(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """`input_ids` padded with `pad_id`, the matching `attention_mask`, and the `lengths` (a list)."""
        return pad_token_ids([item["input_ids"] for item in items], self.pad_id)

    def collate_labels(self, items: Sequence[dict[str, Any]], width: int) -> torch.Tensor:
        """One class id per item, stacked to (B,)."""
        _check_items(items, ["labels"], type(self).__name__)
        return torch.stack([torch.as_tensor(item["labels"], dtype=torch.long).reshape(()) for item in items])


class TokenLabelCollator(TextCollator):
    """Batch for token labelling: as `TextCollator`, with one label per token padded with -100.

    -100 is the label that the loss and the sequence-labelling metrics ignore: it marks padding
    (and, set by the dataset, the continuation pieces of a word, which carry no tag of their own).

    Output:
        input_ids, attention_mask: as `TextCollator`.
        labels: (B, L_max) int64, right-padded with `label_pad_value`.
    """

    def __init__(self, pad_id: int = 0, label_pad_value: int = -100) -> None:
        super().__init__(pad_id)
        self.label_pad_value = label_pad_value

    def collate_labels(self, items: Sequence[dict[str, Any]], width: int) -> torch.Tensor:
        name = type(self).__name__
        _check_items(items, ["labels"], name)
        labels = [torch.as_tensor(item["labels"], dtype=torch.long).reshape(-1) for item in items]
        for item, label in zip(items, labels):
            if len(label) != len(item["input_ids"]):
                raise ValueError(
                    f"{name}: an item has {len(item['input_ids'])} input_ids but {len(label)} labels; "
                    "token labelling needs one label per token (-100 for tokens to ignore)."
                )
        padded = torch.full((len(labels), width), self.label_pad_value, dtype=torch.long)
        for row, label in enumerate(labels):
            padded[row, : len(label)] = label
        return padded
