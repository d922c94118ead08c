"""A small decoder-only Transformer over characters (nanoGPT-like) for text generation.

Token and position embeddings, `num_layers` pre-norm blocks of causal self-attention (torch's
`scaled_dot_product_attention`) and an MLP, a final LayerNorm and an output head tied to the token
embedding. The vocabulary is the config's `charset` plus three special ids (`CharVocabulary`), so a
saved model carries its vocabulary in model_config.yaml, as the CRNN carries its charset.

Batches follow `GenerationCollator`'s layout (tamrin.datasets.tasks.text_generation)::

    input_ids       [pad pad BOS p p p | t t t EOS pad]   prompts end at one column P,
    attention_mask  [ 0   0   1  1 1 1 | 1 1 1  1   0 ]   targets start there
    labels          [-100 ...          | t t t EOS -100]  only the target (and EOS) is scored
    prompt_lengths  (B,) tokens of each prompt with its BOS; P = max(prompt_lengths)

Positions count real tokens only (`cumsum(attention_mask) - 1`), so left padding does not move
them, and `generate(input_ids, attention_mask, prompt_lengths)` continues the prompts `[:, :P]`:
this is how the Trainer's `evaluate_with_generate` generates from such a batch.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tamrin.configs import ConfigError, check_range
from tamrin.models.base import Model, ModelConfig
from tamrin.models.registry import register_model
from tamrin.preprocessors.char_vocabulary import IGNORE_INDEX, CharVocabulary, charset_problem

__all__ = ["CharVocabulary", "TextGenerator", "TextGeneratorConfig", "DEFAULT_CHARSET", "IGNORE_INDEX"]

DEFAULT_CHARSET = " " + string.ascii_letters + string.digits + string.punctuation


@dataclass
class TextGeneratorConfig(ModelConfig):
    """Configuration of `TextGenerator`. Recipes take `charset` from the training data.

    Attributes:
        charset: the characters the model reads and writes (ids 3+; 0-2 are PAD, BOS, EOS).
        context_length: the most tokens (BOS + prompt + output) the model attends over.
        embed_dim: width of the embeddings and the residual stream; divisible by num_heads.
        num_layers: Transformer blocks.
        num_heads: attention heads per block.
        mlp_ratio: hidden width of each block's MLP, as a multiple of embed_dim.
        dropout: dropout on embeddings, attention and MLP outputs.
        max_new_tokens: how many tokens `generate` and `predict` add by default.
    """

    name: str = "text_generator"
    charset: str = DEFAULT_CHARSET
    context_length: int = 64
    embed_dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.0
    max_new_tokens: int = 32

    def validate(self) -> list[str | None]:
        problems = list(super().validate())
        problems += [
            charset_problem(self.charset),
            check_range("context_length", self.context_length, minimum=2),
            check_range("embed_dim", self.embed_dim, minimum=1),
            check_range("num_layers", self.num_layers, minimum=1),
            check_range("num_heads", self.num_heads, minimum=1),
            check_range("mlp_ratio", self.mlp_ratio, minimum=1),
            check_range("dropout", self.dropout, minimum=0.0, maximum=1.0),
            check_range("max_new_tokens", self.max_new_tokens, minimum=1),
        ]
        if self.num_heads >= 1 and self.embed_dim % self.num_heads:
            problems.append(f"`embed_dim={self.embed_dim!r}` must be divisible by `num_heads={self.num_heads!r}`.")
        return problems


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position i sees positions <= i (and no padding)."""

    def __init__(self, config: TextGeneratorConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.embed_dim, 3 * config.embed_dim)
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)
        self.dropout = config.dropout
        self.proj_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj_dropout(self.proj(out.transpose(1, 2).reshape(batch, length, width)))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, config: TextGeneratorConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.embed_dim
        self.attn_norm = nn.LayerNorm(config.embed_dim)
        self.attn = CausalSelfAttention(config)
        self.mlp_norm = nn.LayerNorm(config.embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(config.embed_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, config.embed_dim),
            nn.Dropout(config.dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), mask)
        return x + self.mlp(self.mlp_norm(x))


@register_model("text_generator", config_class=TextGeneratorConfig)
class TextGenerator(Model):
    """Character-level decoder-only Transformer: next-token loss, greedy or sampled generation.

    `forward` returns `{"logits": (B, T, vocab)}`; `compute_loss` is next-token cross entropy over
    the labelled positions; `generate` continues prompts; `predict(["prompt", ...])` returns the
    continuations as strings.
    """

    config: TextGeneratorConfig

    def __init__(self, config: TextGeneratorConfig) -> None:
        super().__init__(config)
        self.preprocessor = CharVocabulary(config.charset)
        vocab_size = len(self.preprocessor)
        self.token_embedding = nn.Embedding(vocab_size, config.embed_dim)
        self.position_embedding = nn.Embedding(config.context_length, config.embed_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.embed_dim)
        self.head = nn.Linear(config.embed_dim, vocab_size, bias=False)
        self.head.weight = self.token_embedding.weight  # tied: one matrix reads and writes tokens
        self.apply(_init_weights)
        for name, parameter in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.num_layers))

    @property
    def preprocessor(self) -> CharVocabulary:
        """The vocabulary: always `CharVocabulary(config.charset)`, so the saved config restores it."""
        return self.__dict__["_vocabulary"]  # set in __init__, never unset (the setter refuses None)

    @preprocessor.setter
    def preprocessor(self, value: CharVocabulary | None) -> None:
        # Model.__init__ sets None before the vocabulary exists; any later value must match the
        # config's charset, or the saved model would load with other ids than it was trained on.
        if value is None and "_vocabulary" not in self.__dict__:
            return
        if not isinstance(value, CharVocabulary) or value.charset != self.config.charset:
            raise ConfigError(
                f"TextGenerator's preprocessor must be CharVocabulary({self.config.charset!r}) (its "
                f"config's charset), got {value!r}; build the model with the data's charset."
            )
        self.__dict__["_vocabulary"] = value

    # -- forward and loss ------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        prompt_lengths: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Next-token logits for every position.

        Args:
            input_ids: (B, T) token ids.
            labels: unused here (the loss is `compute_loss`); accepted so a whole batch can be passed.
            attention_mask: (B, T) 1 for tokens, 0 for padding (left or right); None: no padding.
            prompt_lengths: unused by `forward` (`generate` reads it); accepted for the same reason.

        Returns:
            {"logits": (B, T, vocab_size)}.

        Raises:
            ValueError: a sequence holds more tokens than `context_length`.
        """
        self._check_length(input_ids, attention_mask)
        if attention_mask is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
            mask = None
        else:
            positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
            mask = _attention_mask(attention_mask.bool())
        x = self.dropout(self.token_embedding(input_ids) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x, mask)
        return {"logits": self.head(self.norm(x))}

    def _check_length(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
        width = input_ids.shape[1]
        if width <= self.config.context_length:
            return  # no row can be longer than the batch: skip the host sync below
        longest = width if attention_mask is None else int(attention_mask.sum(dim=1).max())
        if longest > self.config.context_length:
            raise ValueError(
                f"A sequence of {longest} tokens exceeds the model's `context_length={self.config.context_length}`;"
                " shorten the data or raise `model.context_length`."
            )

    def compute_loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Mean cross entropy of predicting token t+1 at position t, over labels != -100."""
        logits = outputs["logits"][:, :-1].float()
        targets = batch["labels"][:, 1:]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)

    # -- generation --------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        prompt_lengths: torch.Tensor | None = None,
        max_new_tokens: int | None = None,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue left-padded prompts; greedy unless `do_sample`.

        Args:
            input_ids: (B, T) left-padded prompts starting with BOS, or a collated batch whose
                prompts end at column max(prompt_lengths) (the targets after it are ignored).
            attention_mask: (B, T) 1 for tokens, 0 for padding; None: no padding.
            prompt_lengths: (B,) prompt lengths of a collated batch; None: all of input_ids is prompt.
            max_new_tokens: tokens to add at most (default: config.max_new_tokens).
            do_sample: sample from softmax(logits / temperature) (top_k best only) instead of argmax.
            temperature: > 0; the sampling temperature.
            top_k: sample among the k most likely tokens only (None: all).
            generator: the torch.Generator of the draws, for reproducible sampling.

        Returns:
            (B, N) new token ids, N <= max_new_tokens; a row stops at its EOS and is padded with PAD.
            When the context fills up, the oldest tokens slide out of the window (as in nanoGPT).
        """
        max_new_tokens = self.config.max_new_tokens if max_new_tokens is None else max_new_tokens
        _check_sampling(max_new_tokens, temperature, top_k)
        if prompt_lengths is not None:
            prompt_end = int(prompt_lengths.max())
            input_ids = input_ids[:, :prompt_end]
            attention_mask = None if attention_mask is None else attention_mask[:, :prompt_end]
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        self._check_length(input_ids, mask)
        ids, new = input_ids, []
        finished = torch.zeros(len(ids), dtype=torch.bool, device=ids.device)
        window = self.config.context_length
        for _ in range(max_new_tokens):
            logits = self(ids[:, -window:], attention_mask=mask[:, -window:])["logits"][:, -1].float()
            token = _next_token(logits, do_sample, temperature, top_k, generator)
            token = token.masked_fill(finished, CharVocabulary.PAD)
            new.append(token)
            finished |= token == CharVocabulary.EOS
            ids = torch.cat([ids, token[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(token)[:, None]], dim=1)
            if bool(finished.all()):  # a host sync per token; generation is sequential anyway
                break
        return torch.stack(new, dim=1) if new else ids.new_zeros((len(ids), 0))

    # -- raw inputs and readable outputs ----------------------------------------------------------
    def preprocess(self, inputs: Sequence[str]) -> dict[str, torch.Tensor]:
        """Prompts -> `{"input_ids", "attention_mask"}`: BOS + characters, left-padded.

        Raises:
            ConfigError: an input is not a string, holds characters outside the vocabulary, or is
                longer than the context (context_length - 1 characters, BOS takes one position).
        """
        if isinstance(inputs, str):
            inputs = [inputs]
        rows = [[CharVocabulary.BOS, *self.preprocessor.encode(_as_prompt(text, i))] for i, text in enumerate(inputs)]
        limit = self.config.context_length
        for index, row in enumerate(rows):
            if len(row) > limit:
                raise ConfigError(
                    f"Prompt {index} has {len(row) - 1} characters; the model reads at most "
                    f"{limit - 1} (`context_length={limit}` minus BOS). Shorten the prompt."
                )
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), CharVocabulary.PAD, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, width - len(row) :] = torch.tensor(row)
            attention_mask[index, width - len(row) :] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    @torch.inference_mode()
    def predict(self, inputs: Sequence[str], max_new_tokens: int | None = None) -> list[str]:
        """The greedy continuation of each prompt, as a string (up to EOS or max_new_tokens)."""
        if not len(inputs):
            return []
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            batch = {key: value.to(device) for key, value in self.preprocess(inputs).items()}
            generated = self.generate(
                batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=max_new_tokens
            )
            return self.post_process(generated)
        finally:
            self.train(was_training)

    def post_process(self, outputs: torch.Tensor | dict[str, torch.Tensor]) -> list[str]:
        """Decode `generate`'s (B, N) token ids to strings (each up to its EOS).

        Raises:
            ValueError: given `forward`'s logits: scoring teacher-forced logits as text would
                measure something else; evaluate with `evaluate_with_generate: true`.
        """
        if isinstance(outputs, dict):
            raise ValueError(
                "TextGenerator.post_process decodes generated token ids, not forward's "
                f"{sorted(outputs)}; set `trainer.evaluate_with_generate: true` for text metrics."
            )
        return [self.preprocessor.decode(row) for row in outputs.tolist()]

    def decode_labels(self, batch: dict[str, Any]) -> list[str]:
        """The reference texts of a batch: its labelled positions (the targets), up to EOS."""
        return [self.preprocessor.decode([i for i in row if i != IGNORE_INDEX]) for row in batch["labels"].tolist()]


def _attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) boolean mask: causal, no padded keys; a padded query sees itself (no empty rows)."""
    length = valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)
    return (causal & valid[:, None, None, :]) | eye


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def _check_sampling(max_new_tokens: Any, temperature: float, top_k: int | None) -> None:
    checks = [
        check_range("max_new_tokens", max_new_tokens, minimum=0),
        check_range("temperature", temperature, minimum=0.0, exclusive_minimum=True),
        check_range("top_k", top_k, minimum=1, optional=True),
    ]
    problems = [problem for problem in checks if problem]
    if problems:
        raise ConfigError(problems, config_name="generate() arguments" if len(problems) > 1 else None)


def _next_token(
    logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int | None, generator: torch.Generator | None
) -> torch.Tensor:
    """The next token of each row: the argmax, or a draw from the (top-k) softmax at `temperature`."""
    if not do_sample:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)


def _as_prompt(text: Any, index: int) -> str:
    if not isinstance(text, str):
        raise ConfigError(f"Prompt {index} must be a string, got {type(text).__name__} ({text!r}).")
    return text
