"""Synthetic text generation: small string tasks generated on demand ("rev bdaf:" -> "f a d b").

Deterministic by (seed, split, index), with splits that never share a prompt; items, collator
and vocabulary are those of the `text_generation` task (tamrin.datasets.tasks.text_generation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tamrin.configs import ConfigError, check_choice, check_range
from tamrin.datasets.base import DatasetConfig, register_dataset
from tamrin.datasets.synthetic.splits import draw_in_split, split_id
from tamrin.datasets.tasks.text_generation import PairDataset
from tamrin.preprocessors.char_vocabulary import CharVocabulary

__all__ = ["SYNTHETIC_TASKS", "SyntheticGenerationConfig", "SyntheticGenerationDataset"]

SYNTHETIC_TASKS = {"reverse": "rev", "sort": "sort", "shift": "next"}
"""Task name -> the word that starts its prompt."""


@dataclass
class SyntheticGenerationConfig(DatasetConfig):
    """Configuration of `SyntheticGenerationDataset`.

    Attributes:
        num_samples: size of the train split.
        eval_num_samples: size of the validation and the test split.
        seed: the seed of every sample (with the split and the index).
        tasks: which tasks to mix, drawn uniformly: "reverse" the letters, "sort" them, or
            "shift" each to the next letter of the alphabet (the last wraps to the first).
        alphabet: the letters of the inputs.
        min_length: the fewest letters of an input.
        max_length: the most letters of an input.
    """

    name: str = "synthetic_generation"
    task: str = "text_generation"
    num_samples: int = 20000
    eval_num_samples: int = 500
    seed: int = 0
    tasks: list[str] = field(default_factory=lambda: list(SYNTHETIC_TASKS))
    alphabet: str = "abcdefghij"
    min_length: int = 3
    max_length: int = 6

    def validate(self) -> list[str | None]:
        problems = list(super().validate())
        problems += [
            check_range("num_samples", self.num_samples, minimum=1),
            check_range("eval_num_samples", self.eval_num_samples, minimum=1),
            check_range("min_length", self.min_length, minimum=1),
            check_range("max_length", self.max_length, minimum=max(self.min_length, 1)),
        ]
        if not self.tasks:
            problems.append(f"`tasks` must list at least one of {list(SYNTHETIC_TASKS)}.")
        problems += [check_choice(f"tasks[{i}]", task, SYNTHETIC_TASKS) for i, task in enumerate(self.tasks)]
        if len(self.alphabet) < 2 or len(set(self.alphabet)) != len(self.alphabet) or not self.alphabet.isalnum():
            problems.append(
                f"`alphabet={self.alphabet!r}` must hold at least two distinct letters or digits, none repeated."
            )
        return problems


@register_dataset("synthetic_generation", config_class=SyntheticGenerationConfig)
class SyntheticGenerationDataset(PairDataset):
    """Generated string tasks, e.g. "rev bdaf:" -> "f a d b", "sort bdaf:" -> "a b d f", "next bdj:" -> "c e a".

    Targets are space-separated letters, so BLEU and ROUGE (which count whitespace tokens) score
    each letter. Samples are generated lazily from (seed, split, index); a prompt belongs to exactly
    one split (by a hash: 80% train, 10% validation, 10% test), so evaluation prompts are unseen.
    """

    config: SyntheticGenerationConfig

    def __init__(self, config: SyntheticGenerationConfig, split: str = "train", **kwargs: Any) -> None:
        self._split_id = split_id("synthetic_generation", split)
        super().__init__(config, split=split, **kwargs)
        self._check_preprocessor()
        charset = "".join(sorted(set(config.alphabet + " :" + "".join(SYNTHETIC_TASKS[t] for t in config.tasks))))
        if self.preprocessor is None:
            self.preprocessor = CharVocabulary(charset)
        unknown = self.vocabulary.unknown(charset)
        if unknown:
            raise ConfigError(
                f"The given vocabulary {self.vocabulary.charset!r} lacks characters {unknown} of "
                f"synthetic_generation's prompts; build every split with the train split's preprocessor."
            )

    def num_rows(self) -> int:
        return self.config.num_samples if self.split == "train" else self.config.eval_num_samples

    def pair(self, index: int) -> tuple[str, str]:
        rng = np.random.default_rng([self.config.seed, self._split_id, index])
        failure = "too few distinct prompts: raise `max_length` or the alphabet."
        return draw_in_split(lambda: self._draw(rng), lambda pair: pair[0], self.split, "prompt", failure)

    def _draw(self, rng: np.random.Generator) -> tuple[str, str]:
        config = self.config
        task = config.tasks[rng.integers(len(config.tasks))]
        length = int(rng.integers(config.min_length, config.max_length + 1))
        letters = [config.alphabet[i] for i in rng.integers(len(config.alphabet), size=length)]
        if task == "reverse":
            output = letters[::-1]
        elif task == "sort":
            output = sorted(letters, key=config.alphabet.index)
        else:  # shift
            output = [config.alphabet[(config.alphabet.index(c) + 1) % len(config.alphabet)] for c in letters]
        return f"{SYNTHETIC_TASKS[task]} {''.join(letters)}:", " ".join(output)
