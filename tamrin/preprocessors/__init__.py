"""Preprocessors: what turns raw inputs (text, images) into ids and tensors and back, shared by models and data.

A dataset builds its preprocessor from the training split (a tokenizer and label map, a character
vocabulary, an image transform and label map) and a model saves it beside its weights, so both
import it from here and never from each other: models, datasets and metrics handlers depend on
`tamrin.preprocessors`, which depends only on `tamrin.configs`.
"""

from __future__ import annotations

from tamrin.preprocessors.char_vocabulary import IGNORE_INDEX, CharVocabulary
from tamrin.preprocessors.charset import CharsetPreprocessor
from tamrin.preprocessors.images import IMAGE_CHANNELS, ImagePreprocessor, check_image_settings, open_image
from tamrin.preprocessors.padding import pad_sequences, pad_token_ids
from tamrin.preprocessors.tokenizer import PAD_TOKEN, TOKENIZER_MODELS, UNK_TOKEN, TextPreprocessor, Tokenizer

__all__ = [
    "IMAGE_CHANNELS",
    "ImagePreprocessor",
    "check_image_settings",
    "open_image",
    "pad_sequences",
    "pad_token_ids",
    "CharVocabulary",
    "CharsetPreprocessor",
    "IGNORE_INDEX",
    "PAD_TOKEN",
    "TOKENIZER_MODELS",
    "TextPreprocessor",
    "Tokenizer",
    "UNK_TOKEN",
]
