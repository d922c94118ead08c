"""The character vocabulary of `text_generator`: characters <-> ids, with PAD, BOS and EOS.

It lives in the model's config (`charset`), so a saved model restores it from model_config.yaml;
the generation datasets build it from their training data and hand it to the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from tamrin.configs import ConfigError

__all__ = ["CharVocabulary", "IGNORE_INDEX", "charset_problem"]

IGNORE_INDEX = -100  # label value of positions the loss and the metrics skip (prompt, padding)


class CharVocabulary:
    """Characters <-> ids: 0 is padding, 1 begins a sequence (BOS), 2 ends it (EOS), 3+ are `charset`.

    Unknown characters are an error, never mapped to a catch-all id: a model that silently reads
    "?" for every character it never saw would give answers that look valid and are not.
    """

    PAD, BOS, EOS = 0, 1, 2
    NUM_SPECIAL = 3

    def __init__(self, charset: str) -> None:
        problem = charset_problem(charset)
        if problem:
            raise ConfigError(problem)
        self.charset = charset
        self._ids = {char: index + self.NUM_SPECIAL for index, char in enumerate(charset)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharVocabulary:
        """The vocabulary of every character in `texts`, sorted (the same texts give the same ids)."""
        return cls("".join(sorted(set().union(*map(set, texts)))))

    def __len__(self) -> int:
        return len(self.charset) + self.NUM_SPECIAL

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocabulary) and other.charset == self.charset

    def __hash__(self) -> int:
        return hash(self.charset)

    def __repr__(self) -> str:
        return f"CharVocabulary({self.charset!r})"

    def unknown(self, text: str) -> list[str]:
        """The characters of `text` outside the charset, sorted."""
        return sorted({char for char in text if char not in self._ids})

    def encode(self, text: str) -> list[int]:
        """The ids of `text` (no BOS/EOS). Raises ConfigError naming characters outside the charset."""
        unknown = self.unknown(text)
        if unknown:
            raise ConfigError(
                f"Characters {unknown} of {text!r} are not in the vocabulary {self.charset!r}; "
                "train on data that contains them (or list them in the charset)."
            )
        return [self._ids[char] for char in text]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text of `ids` up to the first EOS; padding and BOS are skipped."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        chars = []
        for index in ids:
            if index == self.EOS:
                break
            if index >= self.NUM_SPECIAL:
                chars.append(self.charset[index - self.NUM_SPECIAL])
        return "".join(chars)


def charset_problem(charset: Any) -> str | None:
    """Why `charset` cannot be a vocabulary (None when it can)."""
    if not isinstance(charset, str) or not charset:
        return f"`charset={charset!r}` must be a non-empty string of characters."
    if len(set(charset)) != len(charset):
        repeated = sorted({c for c in charset if charset.count(c) > 1})
        return f"`charset={charset!r}` repeats characters {repeated}; each must appear once."
    return None
