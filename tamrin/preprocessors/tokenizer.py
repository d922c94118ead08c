"""A small trainable tokenizer and the text preprocessor (tokenizer + label map) of the text tasks.

The text tasks train their tokenizer on the user's own training texts instead of downloading one,
so a run needs no network and the vocabulary fits the data. `Tokenizer` wraps the `tokenizers`
library (a word-level or WordPiece model behind a Unicode-normalising, optionally lowercasing,
whitespace-and-punctuation pre-tokenizer); `TextPreprocessor` adds the label map and the maximum
length, and is what a text dataset hands its model, which saves it beside its weights::

    tokenizer.json          the `tokenizers` file (Tokenizer.save / Tokenizer.load)
    text_preprocessor.json  {"labels": [...], "max_length": N}: label i has id i
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tamrin.configs import ConfigError, atomic_write_text, check_choice

__all__ = ["PAD_TOKEN", "UNK_TOKEN", "TOKENIZER_MODELS", "TextPreprocessor", "Tokenizer"]

PAD_TOKEN = "[PAD]"  # id 0: the collators pad input_ids with it
UNK_TOKEN = "[UNK]"  # id 1: words (or characters) the training texts never showed
TOKENIZER_MODELS = ("wordpiece", "word")
TOKENIZER_FILENAME = "tokenizer.json"
PREPROCESSOR_FILENAME = "text_preprocessor.json"


def _require_tokenizers() -> None:
    """The text tasks' tokenizer is the optional `text` extra: say how to install it, not ModuleNotFoundError."""
    import importlib.util

    if importlib.util.find_spec("tokenizers") is None:
        raise ConfigError(
            "The text tasks train their tokenizer with the `tokenizers` library, which is not installed: "
            '`pip install "tamrin[text]"` (or `pip install tokenizers`).'
        )


def _word_counts(texts: Iterable[str], normalizer: Any, pre_tokenizer: Any) -> Counter[str]:
    """How often each word occurs, split exactly as `encode` will split it."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def _frequent(counts: Counter[str], min_frequency: int) -> list[str]:
    """Words seen at least `min_frequency` times, most frequent first, ties in alphabetical order."""
    return [
        word for word, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])) if count >= min_frequency
    ]


def _wordpiece_tokens(counts: Counter[str], min_frequency: int) -> list[str]:
    """Every character (alone and as a `##` continuation), most frequent first, then frequent words."""
    characters: Counter[str] = Counter()
    for word, count in counts.items():
        characters.update({char: count * word.count(char) for char in set(word)})
    alphabet = _frequent(characters, 1)
    pieces = [token for char in alphabet for token in (char, f"##{char}")]
    return pieces + [word for word in _frequent(counts, min_frequency) if word not in characters]


class Tokenizer:
    """Text <-> token ids, trained on the user's texts with the `tokenizers` library (never downloaded).

    Special tokens: `[PAD]` is id 0 and `[UNK]` id 1. `encode` never adds special tokens, so each
    id stands for a piece of the text (what token labelling needs).

    Args:
        backend: a trained `tokenizers.Tokenizer` whose vocabulary starts with [PAD], [UNK].
    """

    def __init__(self, backend: Any) -> None:
        if backend.token_to_id(PAD_TOKEN) != 0 or backend.token_to_id(UNK_TOKEN) != 1:
            raise ValueError(f"A tamrin Tokenizer needs {PAD_TOKEN} at id 0 and {UNK_TOKEN} at id 1.")
        self.backend = backend

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        *,
        model: str = "wordpiece",
        lowercase: bool = True,
        min_frequency: int = 1,
    ) -> Tokenizer:
        """Build a tokenizer's vocabulary from `texts` (e.g. the training split's texts).

        The vocabulary is counted here rather than by the library's trainers: its WordPiece trainer
        walks hash maps in a per-process random order, so the same texts would get different ids
        from one run to the next (and a resumed run a different model input). Here the same texts
        always give the same ids: words ordered by count, then alphabetically.

        Args:
            texts: the training texts.
            vocab_size: the largest vocabulary, special tokens included (smaller if the texts
                hold fewer distinct tokens).
            model: "wordpiece" (every character seen, alone and as a `##` continuation, then the
                most frequent words: an unseen word is read as known words' prefixes and
                characters) or "word" (the most frequent words; any other word is `[UNK]`).
            lowercase: lowercase the text before splitting it.
            min_frequency: words seen fewer times are left out (characters are always kept).

        Raises:
            ConfigError: an unknown `model`, or `vocab_size` too small for the special tokens.
        """
        # tokenizers: the optional `text` extra, needed only by the text tasks
        _require_tokenizers()
        from tokenizers import Tokenizer as Backend
        from tokenizers import decoders, models, normalizers, pre_tokenizers

        problem = check_choice("tokenizer_model", model, TOKENIZER_MODELS)
        if problem:
            raise ConfigError(problem)
        if vocab_size < 3:
            raise ConfigError(f"`vocab_size={vocab_size!r}` must be >= 3 ([PAD], [UNK] and one token).")
        normalizer = normalizers.Sequence([normalizers.NFKC(), *([normalizers.Lowercase()] if lowercase else [])])
        pre_tokenizer = pre_tokenizers.Whitespace()
        counts = _word_counts(texts, normalizer, pre_tokenizer)
        tokens = _wordpiece_tokens(counts, min_frequency) if model == "wordpiece" else _frequent(counts, min_frequency)
        vocab = {token: index for index, token in enumerate([PAD_TOKEN, UNK_TOKEN, *tokens][:vocab_size])}
        if model == "wordpiece":
            backend = Backend(models.WordPiece(vocab, unk_token=UNK_TOKEN))
            backend.decoder = decoders.WordPiece()
        else:
            backend = Backend(models.WordLevel(vocab, unk_token=UNK_TOKEN))
        backend.normalizer = normalizer
        backend.pre_tokenizer = pre_tokenizer
        backend.add_special_tokens([PAD_TOKEN, UNK_TOKEN])  # already ids 0 and 1: marks them for `decode` to skip
        return cls(backend)

    @property
    def pad_id(self) -> int:
        """The id of [PAD] (0)."""
        return 0

    @property
    def unk_id(self) -> int:
        """The id of [UNK] (1)."""
        return 1

    @property
    def vocab_size(self) -> int:
        """The number of ids, special tokens included (the model's embedding rows)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """The token ids of `text` (no special tokens added)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of many texts at once (the library does them in parallel)."""
        return [encoding.ids for encoding in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def encode_words(self, words: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids of pre-split words, and for each id the index of the word it came from.

        A word may give several ids (pieces, or punctuation split off); token labelling puts the
        word's tag on its first piece only.

        Returns:
            (ids, word_ids), of equal length.
        """
        encoding = self.backend.encode(list(words), is_pretokenized=True, add_special_tokens=False)
        return encoding.ids, [int(index) for index in encoding.word_ids]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids` ([PAD] and [UNK] skipped; lowercased if the tokenizer lowercases)."""
        return self.backend.decode(list(ids), skip_special_tokens=True)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `tokenizer.json` into `directory` (atomically)."""
        path = Path(directory) / TOKENIZER_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.backend.to_str(pretty=True))
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Tokenizer:
        """Read the `tokenizer.json` of `directory` (or that file itself)."""
        _require_tokenizers()
        from tokenizers import Tokenizer as Backend  # the optional `text` extra

        path = Path(directory)
        path = path / TOKENIZER_FILENAME if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"No {TOKENIZER_FILENAME} at {path}.")
        return cls(Backend.from_file(str(path)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.backend.to_str() == other.backend.to_str()

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size})"


class TextPreprocessor:
    """What a text model needs to read raw text and name its outputs: a tokenizer and a label map.

    Label `i` is `labels[i]`. The text datasets build one from the training split and share it
    with the other splits; the model saves it with its weights, so `Model.load` restores both.

    Args:
        tokenizer: the trained tokenizer.
        labels: the class names (text classification) or tags (sequence labelling), in id order.
        max_length: inputs are cut to this many tokens.
    """

    def __init__(self, tokenizer: Tokenizer, labels: Sequence[str], max_length: int) -> None:
        if len(set(labels)) != len(labels):
            raise ValueError(f"Labels must be distinct, got {list(labels)}.")
        self.tokenizer = tokenizer
        self.labels = [str(label) for label in labels]
        self.max_length = int(max_length)
        self.label2id = {label: index for index, label in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        """{id: label}, as a model config and the metrics handlers take it."""
        return dict(enumerate(self.labels))

    def label_id(self, label: Any, where: str) -> int:
        """The id of `label`; `where` (e.g. "data.csv: line 7") locates it in the error.

        Raises:
            ConfigError: the label is not in the map (the message lists the valid labels).
        """
        index = self.label2id.get(str(label))
        if index is None:
            raise ConfigError(
                f"{where}: label {str(label)!r} is not in the label map of the training data; "
                f"valid labels: {self.labels}. Add it to the training data or fix the row."
            )
        return index

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, cut to `max_length`."""
        return self.tokenizer.encode(text)[: self.max_length]

    def encode_words(self, words: Sequence[str]) -> tuple[list[int], list[int]]:
        """`Tokenizer.encode_words`, cut to `max_length`."""
        ids, word_ids = self.tokenizer.encode_words(words)
        return ids[: self.max_length], word_ids[: self.max_length]

    def save(self, directory: str | os.PathLike) -> None:
        """Write tokenizer.json and text_preprocessor.json into `directory` (each atomically)."""
        directory = Path(directory)
        self.tokenizer.save(directory)
        state = {"labels": self.labels, "max_length": self.max_length}
        atomic_write_text(directory / PREPROCESSOR_FILENAME, json.dumps(state, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TextPreprocessor:
        """Read what `save` wrote."""
        path = Path(directory) / PREPROCESSOR_FILENAME
        if not path.is_file():
            raise FileNotFoundError(f"No {PREPROCESSOR_FILENAME} in {directory}.")
        state = json.loads(path.read_text(encoding="utf-8"))
        return cls(Tokenizer.load(directory), state["labels"], state["max_length"])

    @classmethod
    def exists(cls, directory: str | os.PathLike) -> bool:
        """Whether `directory` holds a saved preprocessor."""
        return (Path(directory) / PREPROCESSOR_FILENAME).is_file()

    def __repr__(self) -> str:
        return f"TextPreprocessor({self.tokenizer!r}, labels={self.labels}, max_length={self.max_length})"
