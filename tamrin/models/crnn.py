"""CRNN for image-to-text (license plates): a small CNN, a bidirectional RNN over width, CTC.

As in Hezar's `crnn` license-plate model: conv-bn-relu-pool blocks turn a grayscale image of fixed
size into a sequence of column features (one step per 4 pixels of width), a BiLSTM (or BiGRU)
reads them, and a linear head scores `len(charset) + 1` classes per step, class 0 being the CTC
blank and class `i >= 1` the character `charset[i - 1]`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tamrin.configs import check_choice, check_range
from tamrin.models.base import Model, ModelConfig
from tamrin.models.registry import register_model
from tamrin.preprocessors.charset import CharsetPreprocessor
from tamrin.preprocessors.images import open_image
from tamrin.transfer import host_to_device

__all__ = [
    "CRNN",
    "CRNNConfig",
    "CharsetPreprocessor",
    "ctc_greedy_decode",
    "ctc_loss_with_host_lengths",
    "DEFAULT_CHARSET",
]

DEFAULT_CHARSET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"  # the synthetic plates' charset (no I, O, Q)
RNN_TYPES = ("lstm", "gru")


@dataclass
class CRNNConfig(ModelConfig):
    """Configuration of `CRNN`. The defaults are the tuned CPU recipe for synthetic plates.

    Attributes:
        charset: the characters the model reads; class `i + 1` is `charset[i]`, class 0 the blank.
        image_height: input height in pixels; divisible by 2 ** len(cnn_channels).
        image_width: input width in pixels; divisible by 4 (the model emits image_width / 4 steps).
        cnn_channels: output channels of each conv-bn-relu-pool block (2x2 pooling for the first
            two blocks, 2x1 after, so that the width keeps enough steps for CTC).
        rnn_type: "lstm" or "gru" (bidirectional either way).
        rnn_hidden_size: hidden size of each RNN direction.
        num_rnn_layers: stacked RNN layers.
        dropout: dropout before the RNN and the head (and between RNN layers).
    """

    name: str = "crnn"
    charset: str = DEFAULT_CHARSET
    image_height: int = 32
    image_width: int = 128
    cnn_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    rnn_type: str = "lstm"
    rnn_hidden_size: int = 96
    num_rnn_layers: int = 1
    dropout: float = 0.1

    def validate(self) -> list[str | None]:
        problems = list(super().validate())
        if not self.charset:
            problems.append("`charset` must hold at least one character.")
        elif len(set(self.charset)) != len(self.charset):
            repeated = sorted({c for c in self.charset if self.charset.count(c) > 1})
            problems.append(f"`charset={self.charset!r}` repeats characters {repeated}; each must appear once.")
        problems.append(
            None
            if self.cnn_channels and all(c >= 1 for c in self.cnn_channels)
            else f"`cnn_channels={self.cnn_channels!r}` must be a non-empty list of positive ints."
        )
        factor = 2 ** max(len(self.cnn_channels), 1)
        if self.image_height < factor or self.image_height % factor:
            problems.append(
                f"`image_height={self.image_height!r}` must be a positive multiple of {factor} "
                f"(2 ** len(cnn_channels))."
            )
        if self.image_width < 4 or self.image_width % 4:
            problems.append(f"`image_width={self.image_width!r}` must be a positive multiple of 4.")
        problems += [
            check_choice("rnn_type", self.rnn_type, RNN_TYPES),
            check_range("rnn_hidden_size", self.rnn_hidden_size, minimum=1),
            check_range("num_rnn_layers", self.num_rnn_layers, minimum=1),
            check_range("dropout", self.dropout, minimum=0.0, maximum=1.0),
        ]
        return problems


def ctc_greedy_decode(logits: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Greedy (best-path) CTC decoding: argmax per step, collapse repeats, drop blanks.

    Args:
        logits: (B, T, C) scores (logits or log-probabilities).
        blank: the blank class.

    Returns:
        For each sample, the decoded class ids.
    """
    best = logits.argmax(dim=-1)  # (B, T)
    previous = F.pad(best[:, :-1], (1, 0), value=blank)
    keep = (best != blank) & (best != previous)  # a repeat separated by a blank is kept: a-a
    # One read of the whole batch (-1 marks dropped steps); `row[mask].tolist()` per sample waited for
    # the device twice per sample on a GPU (a data-dependent shape, then the read).
    return [[index for index in row if index >= 0] for row in torch.where(keep, best, -1).tolist()]


def ctc_loss_with_host_lengths(
    log_probs: torch.Tensor, labels: torch.Tensor, target_lengths: Sequence[int]
) -> torch.Tensor:
    """`F.ctc_loss(..., reduction="mean", zero_infinity=True)` with the lengths on the host, every step T long.

    Host lengths are not read back from the device. PyTorch's CUDA CTC still copies them (and its
    batch offsets) to the device inside the kernel, 3 blocking copies forward and 3 backward, which no
    caller can avoid; its "mean" reduction would copy them once more, blocking, so the mean is taken
    here with the lengths copied pinned and non-blocking. The numbers are the same: the mean divides
    each sample's loss by its length (at least 1) and averages.

    Args:
        log_probs: (T, B, C) log-probabilities.
        labels: (B, S) targets padded with 0.
        target_lengths: the B true target lengths.
    """
    steps, batch_size = log_probs.shape[:2]
    lengths = torch.tensor(list(target_lengths), dtype=torch.long)  # host tensors: F.ctc_loss reads them in place
    input_lengths = torch.full((batch_size,), steps, dtype=torch.long)
    losses = F.ctc_loss(log_probs, labels, input_lengths, lengths, reduction="none", zero_infinity=True)
    divisor = lengths.clamp(min=1).to(losses.dtype)
    return (losses / host_to_device(divisor, losses.device)).mean()


@register_model("crnn", config_class=CRNNConfig)
class CRNN(Model):
    """Convolutional recurrent network trained with CTC; reads text lines such as license plates.

    `forward` returns `{"logits": (B, T, C)}` (batch first, T = image_width / 4,
    C = len(charset) + 1); `compute_loss` applies CTC; `post_process` decodes greedily to strings.
    """

    config: CRNNConfig

    def __init__(self, config: CRNNConfig) -> None:
        super().__init__(config)
        self.preprocessor = CharsetPreprocessor(config.charset, config.image_height, config.image_width)
        blocks: list[nn.Module] = []
        in_channels = 1
        for index, channels in enumerate(config.cnn_channels):
            blocks += [
                nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d((2, 2) if index < 2 else (2, 1)),
            ]
            in_channels = channels
        self.cnn = nn.Sequential(*blocks)
        feature_height = config.image_height // 2 ** len(config.cnn_channels)
        rnn_class = nn.LSTM if config.rnn_type == "lstm" else nn.GRU
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = rnn_class(
            in_channels * feature_height,
            config.rnn_hidden_size,
            num_layers=config.num_rnn_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.dropout if config.num_rnn_layers > 1 else 0.0,
        )
        self.head = nn.Linear(2 * config.rnn_hidden_size, len(config.charset) + 1)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        label_lengths: torch.Tensor | None = None,
        **_: Any,
    ) -> dict[str, torch.Tensor]:
        """Score each column step.

        Args:
            pixel_values: (B, 1, image_height, image_width) normalised grayscale images.
            labels: unused here (the loss is `compute_loss`); accepted so a whole batch can be passed.
            label_lengths: unused here, as `labels`.

        Returns:
            {"logits": (B, T, len(charset) + 1)}.
        """
        expected = (1, self.config.image_height, self.config.image_width)
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != expected:
            raise ValueError(
                f"CRNN expects pixel_values of shape (B, {', '.join(map(str, expected))}), "
                f"got {tuple(pixel_values.shape)}."
            )
        features = self.cnn(pixel_values)  # (B, C, H', T)
        features = features.flatten(1, 2).transpose(1, 2)  # (B, T, C * H')
        sequence, _ = self.rnn(self.dropout(features))
        return {"logits": self.head(self.dropout(sequence))}

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """CTC loss (blank 0, mean over the batch of per-target-length losses, zero_infinity).

        `batch["labels"]` is (B, S) padded with 0. The true lengths come from `batch["target_lengths"]`
        (a list on the host, as the CTCCollator gives them), else `batch["label_lengths"]` (B,), else
        from the count of non-zero labels.
        """
        logits = outputs["logits"]
        labels = batch["labels"]
        log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # CTC wants (T, B, C)
        if batch.get("target_lengths") is not None:
            return ctc_loss_with_host_lengths(log_probs, labels, batch["target_lengths"])
        lengths = batch.get("label_lengths")  # on the device: F.ctc_loss reads it back (4 host syncs on a GPU)
        lengths = (labels > 0).sum(dim=1) if lengths is None else lengths
        input_lengths = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long, device=logits.device)
        return F.ctc_loss(log_probs, labels, input_lengths, lengths, blank=0, reduction="mean", zero_infinity=True)

    def preprocess(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Image files (paths) or PIL images -> `{"pixel_values": (B, 1, H, W)}`, resized like training."""
        if isinstance(inputs, (str, os.PathLike)) or not isinstance(inputs, Sequence):
            inputs = [inputs]  # one image, not a sequence of characters
        return {"pixel_values": self.preprocessor([open_image(item) for item in inputs])}

    def decode_labels(self, batch: dict[str, Any]) -> list[str]:
        """The reference texts of a batch (for CER): its padded `labels` decoded with the charset."""
        lengths = batch.get("target_lengths", batch.get("label_lengths"))  # the host list saves a read
        return self.preprocessor.decode_batch(batch["labels"], lengths)

    def post_process(self, outputs: dict[str, torch.Tensor] | torch.Tensor) -> list[str]:
        """Greedy CTC decoding of `{"logits": (B, T, C)}` (or the logits tensor) to strings."""
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs
        return [self.preprocessor.decode(ids) for ids in ctc_greedy_decode(logits.detach())]
