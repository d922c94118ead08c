"""Generated sentiment sentences for the text_classification recipe, no download.

Every row is drawn from a generator seeded with (seed, split, index), so a split is the same on
every run and machine. The splits never share a sentence: a sentence belongs to one split by a hash
of its text (80% train, 10% validation, 10% test), so evaluation reads sentences never trained on.

"the hotel was not very pleasant but the staff seemed great" -> positive. A clause's polarity comes
from its adjective, flipped by a negation; in "A but B" the label is B's; neutral clauses have no
opinion word; filler words are scattered in. Word counts alone cannot solve it: the model must read
negation and order. A share of labels (`label_noise`) is replaced at random, in every split, as
annotators err: the best reachable accuracy is about `1 - label_noise`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tamrin.configs import check_range
from tamrin.datasets.base import register_dataset
from tamrin.datasets.synthetic.splits import draw_row, split_id, split_rng
from tamrin.datasets.tasks.text_classification import TextClassificationDataset, TextEncodingConfig

__all__ = ["FILLERS", "SENTIMENT_LABELS", "SyntheticSentimentConfig", "SyntheticSentimentDataset"]

SENTIMENT_LABELS = ("negative", "neutral", "positive")

# -- word lists ----------------------------------------------------------------------------------
_SUBJECTS = (
    "movie",
    "film",
    "book",
    "restaurant",
    "meal",
    "hotel",
    "room",
    "service",
    "phone",
    "camera",
    "laptop",
    "concert",
    "show",
    "coffee",
    "staff",
    "app",
    "game",
    "trip",
    "song",
    "course",
)
_POSITIVE = (
    "good",
    "great",
    "excellent",
    "wonderful",
    "amazing",
    "lovely",
    "fantastic",
    "pleasant",
    "superb",
    "enjoyable",
    "brilliant",
    "delightful",
)
_NEGATIVE = (
    "bad",
    "terrible",
    "awful",
    "boring",
    "horrible",
    "poor",
    "disappointing",
    "dull",
    "annoying",
    "mediocre",
    "dreadful",
    "unpleasant",
)
_NEUTRAL = ("new", "small", "large", "blue", "old", "long", "short", "quiet", "busy", "local", "open", "round")
_VERBS = ("was", "is", "seemed", "felt", "looked")
_INTENSIFIERS = ("", "", "very", "really", "quite", "so", "extremely", "rather", "pretty")
_NEGATIONS = ("not", "never", "hardly")
_CONTRASTS = ("but", "however", "yet")
FILLERS = (
    "honestly",
    "well",
    "overall",
    "yesterday",
    "today",
    "again",
    "actually",
    "basically",
    "anyway",
    "also",
    "literally",
    "frankly",
    "apparently",
    "definitely",
    "still",
    "then",
)


# -- sentiment -----------------------------------------------------------------------------------
@dataclass
class SyntheticSentimentConfig(TextEncodingConfig):
    """Configuration of `SyntheticSentimentDataset` (tokenizer fields: see `TextEncodingConfig`).

    Attributes:
        num_samples: size of the train split.
        eval_num_samples: size of the validation and the test split.
        seed: the seed of every sentence (with the split and the index).
        contrast_rate: share of "A but B" sentences, labelled by B.
        negation_rate: share of clauses whose adjective is negated (which flips an opinion).
        max_fillers: up to this many filler words are inserted at random places.
        label_noise: share of sentences (in every split) whose label is replaced by another one at random.
    """

    name: str = "synthetic_sentiment"
    task: str = "text_classification"
    num_samples: int = 8000
    eval_num_samples: int = 1000
    seed: int = 0
    contrast_rate: float = 0.35
    negation_rate: float = 0.3
    max_fillers: int = 3
    label_noise: float = 0.05

    def validate(self) -> list[str | None]:
        return [
            *super().validate(),
            check_range("num_samples", self.num_samples, minimum=1),
            check_range("eval_num_samples", self.eval_num_samples, minimum=1),
            check_range("contrast_rate", self.contrast_rate, minimum=0.0, maximum=1.0),
            check_range("negation_rate", self.negation_rate, minimum=0.0, maximum=1.0),
            check_range("max_fillers", self.max_fillers, minimum=0),
            check_range("label_noise", self.label_noise, minimum=0.0, maximum=1.0),
        ]


def _sentiment_clause(rng: random.Random, polarity: str, negation_rate: float) -> list[str]:
    negated = rng.random() < negation_rate
    if polarity == "neutral":
        adjective = rng.choice(_NEUTRAL)
    else:  # a negated opinion word reads as its opposite: "not good" is negative
        positive_word = (polarity == "positive") != negated
        adjective = rng.choice(_POSITIVE if positive_word else _NEGATIVE)
    words = ["the", rng.choice(_SUBJECTS), rng.choice(_VERBS)]
    words += [rng.choice(_NEGATIONS)] if negated else []
    words += [rng.choice(_INTENSIFIERS), adjective]
    return [word for word in words if word]


def _insert_fillers(rng: random.Random, words: list[str], max_fillers: int) -> list[str]:
    words = list(words)
    for _ in range(rng.randint(0, max_fillers)):
        words.insert(rng.randint(0, len(words)), rng.choice(FILLERS))
    return words


def sentiment_row(rng: random.Random, config: SyntheticSentimentConfig) -> dict[str, str]:
    """One sentence and its label: the polarity of its last clause (another one, at the `label_noise` rate)."""
    label = rng.choice(SENTIMENT_LABELS)
    words = _sentiment_clause(rng, label, config.negation_rate)
    if rng.random() < config.contrast_rate:
        first = rng.choice([p for p in SENTIMENT_LABELS if p != label])
        words = _sentiment_clause(rng, first, config.negation_rate) + [rng.choice(_CONTRASTS)] + words
    if rng.random() < config.label_noise:
        label = rng.choice([p for p in SENTIMENT_LABELS if p != label])
    return {"text": " ".join(_insert_fillers(rng, words, config.max_fillers)), "label": label}


@register_dataset("synthetic_sentiment", config_class=SyntheticSentimentConfig)
class SyntheticSentimentDataset(TextClassificationDataset):
    """Generated 3-class sentiment sentences (negative, neutral, positive); see the module docstring."""

    # Not a TextClassificationConfig (no files or column fields): this dataset reuses the parent's encoding
    # and overrides what reads those fields (`load_rows`, `text_column`, `label_column`).
    config: SyntheticSentimentConfig  # type: ignore[assignment]
    text_column = "text"
    label_column = "label"

    def __init__(self, config: SyntheticSentimentConfig, split: str = "train", **kwargs: Any) -> None:
        split_id(config.name, split)
        super().__init__(config, split=split, **kwargs)

    def load_rows(self) -> list[dict[str, Any]]:
        config = self.config
        size = config.num_samples if self.split == "train" else config.eval_num_samples
        size = min(size, config.max_size or size)
        return [
            draw_row(
                self.split,
                lambda rng: sentiment_row(rng, config),
                lambda row: row["text"],
                split_rng(config.seed, self.split, index),
            )
            for index in range(size)
        ]
