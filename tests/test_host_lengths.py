"""Lengths kept on the host (for the packed RNN and CTC) give the same numbers as before, bit for bit.

The collators hand lengths as lists, which stay on the host when the batch moves to the device, so
the models no longer read them back from the device. These tests compare each new path with the
one it replaced (PyTorch's own `pack_padded_sequence(enforce_sorted=False)`, `F.ctc_loss` with
device lengths and "mean" reduction, per-sample greedy decoding).
"""

from __future__ import annotations

import pytest
import torch
from accelerate.utils import send_to_device
from torch import nn
from torch.nn import functional as F

from tamrin.datasets.collators import CTCCollator, TextCollator
from tamrin.models.crnn import ctc_greedy_decode, ctc_loss_with_host_lengths
from tamrin.models.text_classifier import PackedBiRNN


def test_the_text_collator_gives_the_lengths_as_a_list_that_stays_on_the_host():
    batch = TextCollator()([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}, {"input_ids": []}])
    assert batch["lengths"] == [3, 1, 0] == batch["attention_mask"].sum(dim=1).tolist()
    assert send_to_device(batch, torch.device("cpu"), non_blocking=True)["lengths"] == [3, 1, 0]


def test_the_ctc_collator_gives_the_target_lengths_as_a_list_beside_the_tensor():
    items = [{"pixel_values": torch.zeros(1, 2, 2), "labels": labels} for labels in ([1, 2, 3], [4])]
    batch = CTCCollator()(items)
    assert batch["target_lengths"] == batch["label_lengths"].tolist() == [3, 1]


def reference_encoder(encoder: PackedBiRNN, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The encoder as it was: lengths from the mask, read back with .cpu(), PyTorch sorting them."""
    lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
    embedded = encoder.dropout(encoder.embedding(input_ids))
    packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
    states, _ = encoder.rnn(packed)
    states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=input_ids.shape[1])
    return states


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_the_packed_encoder_with_host_lengths_equals_pytorchs_unsorted_packing_bitwise(rnn_type):
    torch.manual_seed(0)
    encoder = PackedBiRNN(50, 8, 6, num_layers=2, dropout=0.0, rnn_type=rnn_type)
    lengths = [5, 9, 0, 9, 2, 7, 1, 9]  # ties, an empty text, unsorted
    input_ids = torch.zeros(len(lengths), 9, dtype=torch.long)
    for row, length in enumerate(lengths):
        input_ids[row, :length] = torch.randint(1, 50, (length,))
    mask = (input_ids > 0).long()

    expected = reference_encoder(encoder, input_ids, mask)
    expected.sum().backward()
    expected_grads = [p.grad.clone() for p in encoder.parameters()]
    encoder.zero_grad()
    states = encoder(input_ids, mask, lengths)
    states.sum().backward()

    assert torch.equal(states, expected)
    assert all(torch.equal(p.grad, g) for p, g in zip(encoder.parameters(), expected_grads))
    assert torch.equal(encoder(input_ids, mask), expected)  # no lengths: counted from the mask


def test_ctc_with_host_lengths_equals_ctc_with_device_lengths_and_mean_reduction_bitwise():
    torch.manual_seed(0)
    steps, batch_size, classes = 16, 6, 9
    lengths = torch.tensor([3, 0, 5, 1, 5, 2])
    labels = torch.zeros(batch_size, 5, dtype=torch.long)
    for row, length in enumerate(lengths.tolist()):
        labels[row, :length] = torch.randint(1, classes, (length,))
    logits = torch.randn(batch_size, steps, classes, requires_grad=True)

    def log_probs() -> torch.Tensor:
        return F.log_softmax(logits, dim=-1).transpose(0, 1)

    input_lengths = torch.full((batch_size,), steps)
    expected = F.ctc_loss(log_probs(), labels, input_lengths, lengths, reduction="mean", zero_infinity=True)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    loss = ctc_loss_with_host_lengths(log_probs(), labels, lengths.tolist())
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.equal(loss, expected) and torch.equal(grad, expected_grad)


def test_greedy_decoding_of_a_batch_equals_decoding_each_sample():
    torch.manual_seed(0)
    logits = torch.randn(7, 12, 5)
    logits[2] = -10.0
    logits[2, :, 0] = 10.0  # all blanks: an empty text
    best = logits.argmax(dim=-1)
    previous = F.pad(best[:, :-1], (1, 0), value=0)
    keep = (best != 0) & (best != previous)
    assert ctc_greedy_decode(logits) == [row[mask].tolist() for row, mask in zip(best, keep)]
