"""Generated NER sentences for the sequence_labeling recipe, no download.

"Jordan moved from Paris to New York" with IOB2 tags for PER, LOC and ORG. Some names are both
people and places (Jordan, Paris, Florence, ...): only the context tells which. In the validation
and test splits a share of names (`unseen_name_rate`) comes from lists the training split never
uses, so the score measures reading names from context, not memorising them. Rows are drawn and
split as the sentiment data's are (sentiment.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from tamrin.configs import check_range
from tamrin.datasets.base import register_dataset
from tamrin.datasets.synthetic.sentiment import FILLERS  # the same filler words in both texts
from tamrin.datasets.synthetic.splits import draw_row, split_id, split_rng
from tamrin.datasets.tasks.sequence_labeling import SequenceLabelingDataset
from tamrin.datasets.tasks.text_classification import TextEncodingConfig

__all__ = ["SyntheticNERConfig", "SyntheticNERDataset"]

_FIRST_NAMES = (
    "John",
    "Maria",
    "Ali",
    "Sara",
    "David",
    "Fatima",
    "Chen",
    "Olga",
    "James",
    "Amir",
    "Lucia",
    "Kenji",
    "Nina",
    "Omar",
    "Elena",
    "Reza",
    "Anna",
    "Pedro",
    "Mina",
    "George",
)
_LAST_NAMES = (
    "Smith",
    "Lopez",
    "Karimi",
    "Wang",
    "Ivanova",
    "Brown",
    "Tanaka",
    "Rossi",
    "Haddad",
    "Novak",
    "Garcia",
    "Muller",
    "Silva",
    "Kim",
    "Ahmadi",
)
_CITIES = (
    "Tehran",
    "London",
    "Berlin",
    "Tokyo",
    "Madrid",
    "Cairo",
    "Lima",
    "Oslo",
    "New York",
    "Los Angeles",
    "Rio de Janeiro",
    "Hong Kong",
    "Cape Town",
    "Buenos Aires",
    "Shiraz",
    "Isfahan",
    "Mumbai",
    "Toronto",
)
_AMBIGUOUS = ("Jordan", "Paris", "Georgia", "Florence", "Chelsea", "Sydney", "Austin", "Victoria")
_ORG_NAMES = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Oceanic",
    "Zenith",
    "Apex",
    "Northwind",
)
_ORG_SUFFIXES = ("", "Corp", "Inc", "Group", "Bank", "Labs", "Airlines", "Foundation")
_UNSEEN_NAMES = {  # only in the validation and test splits
    "PER": ("Ivan", "Leila", "Tomas", "Yuki", "Carlos", "Hana", "Viktor", "Zara", "Dmitri", "Noor"),
    "LOC": ("Lisbon", "Nairobi", "Bogota", "Hanoi", "Kyiv", "Dublin", "Santiago", "Abu Dhabi", "Quito"),
    "ORG": ("Massive", "Gringotts", "Wonka", "Prestige", "Monarch", "Aperture", "Blackmesa", "Duff"),
}
_NER_TEMPLATES = (
    "{PER} lives in {LOC}",
    "{PER} works for {ORG}",
    "{PER} moved from {LOC} to {LOC}",
    "{ORG} opened an office in {LOC}",
    "{PER} met {PER} at the {ORG} office",
    "yesterday {ORG} hired {PER}",
    "the flight to {LOC} was delayed",
    "{PER} said that {ORG} will expand to {LOC}",
    "we visited {LOC} last summer",
    "{PER} and {PER} founded {ORG} in {LOC}",
    "according to {PER} , the weather in {LOC} is nice",
    "{ORG} shares fell after the report from {LOC}",
    "a spokesperson for {ORG} declined to comment",
    "{PER} called {PER} from {LOC}",
    "i bought a new phone last week",
    "the meeting with {PER} was moved to friday",
    "{LOC} is colder than {LOC} in winter",
    "{PER} sold the company to {ORG}",
)


# -- named entities ------------------------------------------------------------------------------
@dataclass
class SyntheticNERConfig(TextEncodingConfig):
    """Configuration of `SyntheticNERDataset` (tokenizer fields: see `TextEncodingConfig`).

    Attributes:
        num_samples: size of the train split.
        eval_num_samples: size of the validation and the test split.
        seed: the seed of every sentence (with the split and the index).
        ambiguous_rate: share of person/place slots filled with a name that is both (Jordan, Paris, ...).
        max_fillers: up to this many filler words are inserted between the template's words.
        unseen_name_rate: share of names in the validation and test splits drawn from lists that the
            training split never uses.
    """

    name: str = "synthetic_ner"
    task: str = "sequence_labeling"
    num_samples: int = 6000
    eval_num_samples: int = 1000
    seed: int = 0
    ambiguous_rate: float = 0.25
    max_fillers: int = 2
    unseen_name_rate: float = 0.3

    def validate(self) -> list[str | None]:
        return [
            *super().validate(),
            check_range("num_samples", self.num_samples, minimum=1),
            check_range("eval_num_samples", self.eval_num_samples, minimum=1),
            check_range("ambiguous_rate", self.ambiguous_rate, minimum=0.0, maximum=1.0),
            check_range("max_fillers", self.max_fillers, minimum=0),
            check_range("unseen_name_rate", self.unseen_name_rate, minimum=0.0, maximum=1.0),
        ]


def _entity_words(rng: random.Random, kind: str, config: SyntheticNERConfig, unseen: bool) -> list[str]:
    if unseen and rng.random() < config.unseen_name_rate:
        return rng.choice(_UNSEEN_NAMES[kind]).split()
    if kind == "ORG":
        return [word for word in (rng.choice(_ORG_NAMES), rng.choice(_ORG_SUFFIXES)) if word]
    if rng.random() < config.ambiguous_rate:
        first = rng.choice(_AMBIGUOUS)
    else:
        first = rng.choice(_FIRST_NAMES if kind == "PER" else _CITIES)
    last = [rng.choice(_LAST_NAMES)] if kind == "PER" and rng.random() < 0.5 else []
    return [*first.split(), *last]


def ner_row(rng: random.Random, config: SyntheticNERConfig, unseen: bool = False) -> dict[str, list[str]]:
    """One sentence as words and IOB2 tags, from a template with its slots filled (`unseen`: eval names too)."""
    units: list[tuple[list[str], list[str]]] = []  # (words, tags) of each template piece
    for piece in rng.choice(_NER_TEMPLATES).split():
        if piece in ("{PER}", "{LOC}", "{ORG}"):
            kind = piece[1:-1]
            words = _entity_words(rng, kind, config, unseen)
            units.append((words, [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)))
        else:
            units.append(([piece], ["O"]))
    for _ in range(rng.randint(0, config.max_fillers)):  # between pieces, never inside a name
        units.insert(rng.randint(0, len(units)), ([rng.choice(FILLERS)], ["O"]))
    return {"tokens": [w for words, _ in units for w in words], "tags": [t for _, tags in units for t in tags]}


@register_dataset("synthetic_ner", config_class=SyntheticNERConfig)
class SyntheticNERDataset(SequenceLabelingDataset):
    """Generated NER sentences with IOB2 tags for PER, LOC and ORG; see the module docstring."""

    # Not a SequenceLabelingConfig (no files or column fields): this dataset reuses the parent's encoding
    # and overrides what reads those fields (`load_rows`, `tokens_column`, `tags_column`).
    config: SyntheticNERConfig  # type: ignore[assignment]
    tokens_column = "tokens"
    tags_column = "tags"

    def __init__(self, config: SyntheticNERConfig, split: str = "train", **kwargs: Any) -> None:
        split_id(config.name, split)
        super().__init__(config, split=split, **kwargs)

    def load_rows(self) -> list[dict[str, Any]]:
        config = self.config
        size = config.num_samples if self.split == "train" else config.eval_num_samples
        size = min(size, config.max_size or size)
        unseen = self.split != "train"
        return [
            draw_row(
                self.split,
                lambda rng: ner_row(rng, config, unseen),
                lambda row: " ".join(row["tokens"]),
                split_rng(config.seed, self.split, index),
            )
            for index in range(size)
        ]
