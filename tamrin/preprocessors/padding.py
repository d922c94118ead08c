"""Padding sequences into a batch: shared by the collators (training data) and the text models (raw text).

A text model's `predict` pads the ids of raw texts exactly as the collator padded the training
batches, so it imports the padding from here rather than from the datasets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["pad_sequences", "pad_token_ids"]


def pad_sequences(sequences: Sequence[torch.Tensor], pad_value: int | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D tensors into a (B, max_len) tensor; also return their lengths (B,) as int64."""
    lengths = torch.tensor([len(sequence) for sequence in sequences], dtype=torch.long)
    width = int(lengths.max()) if len(sequences) else 0
    dtype = sequences[0].dtype if len(sequences) else torch.long
    padded = torch.full((len(sequences), width), pad_value, dtype=dtype)
    for row, sequence in enumerate(sequences):
        padded[row, : len(sequence)] = sequence
    return padded, lengths


def pad_token_ids(sequences: Sequence[Sequence[int] | torch.Tensor], pad_id: int) -> dict[str, Any]:
    """Token-id sequences -> `input_ids` (B, L_max) right-padded with `pad_id`, `attention_mask` (1: a token),
    and `lengths`: a Python list, which stays on the host when the batch moves to the device (a packed RNN
    needs the lengths there: reading them back from a GPU would be a sync a step)."""
    ids = [torch.as_tensor(sequence, dtype=torch.long).reshape(-1) for sequence in sequences]
    input_ids, lengths = pad_sequences(ids, pad_id)
    positions = torch.arange(input_ids.shape[1])
    mask = (positions < lengths[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": mask, "lengths": lengths.tolist()}
