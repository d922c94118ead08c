"""The `hf` path of `data_scale.py first-step`: the same work done the way a Hugging Face user does it.

`datasets.load_dataset("parquet", ...)` (converted once into HF_DATASETS_CACHE and memory-mapped),
a `tokenizers` WordPiece tokenizer trained on the texts with the library's own trainer (vocabulary
8,000, [PAD] and [UNK], NFKC + lowercase, whitespace/punctuation split: tamrin's text recipe
defaults) and wrapped in `transformers.PreTrainedTokenizerFast`, `ds.map(tokenize, batched=True)`
padding and cutting to 32 tokens, labels to ids with `class_encode_column`, then
`transformers.Trainer` (batch 64, one step, CPU, no eval, no saving, report_to none) on the same
BiGRU-64 classifier written as a plain `nn.Module` that returns {"loss", "logits"}.

A second run reuses what the first cached: `map` and `class_encode_column` results by fingerprint,
and the trained tokenizer, saved beside the cache keyed by the dataset's fingerprint (as tamrin
caches its preprocessor; retraining would give another fingerprint, as the library's WordPiece
trainer does not order its vocabulary the same way from run to run, and so a cache miss).
At 1e7 rows the Trainer's `RandomSampler` (`torch.randperm(n).tolist()`: a Python list of every
index) adds ~380 MiB of heap and 0.5-2.5 s before the first batch, which the cached run shows.
Run it through `python benchmarks/data_scale.py first-step hf N ROOT`.
"""

from __future__ import annotations

from pathlib import Path

from data_scale import first_step_result, process_age

MAX_LENGTH = 32
VOCAB_SIZE = 8000


def train_tokenizer(ds):  # noqa: ANN001, ANN201
    """A WordPiece tokenizer trained on the `text` column, in batches of 10,000 (the `tokenizers` tutorial's way)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=["[PAD]", "[UNK]"])
    batches = (ds[i : i + 10_000]["text"] for i in range(0, len(ds), 10_000))
    tokenizer.train_from_iterator(batches, trainer=trainer, length=len(ds))
    return tokenizer


def fast_tokenizer(ds):  # noqa: ANN001, ANN201
    """The tokenizer of `ds`: loaded if a previous run saved it for this data, else trained and saved."""
    import datasets.config
    from transformers import PreTrainedTokenizerFast

    folder = Path(datasets.config.HF_DATASETS_CACHE) / "hf-path-tokenizers" / ds._fingerprint
    if not (folder / "tokenizer.json").is_file():
        wrapped = PreTrainedTokenizerFast(tokenizer_object=train_tokenizer(ds), pad_token="[PAD]", unk_token="[UNK]")
        wrapped.save_pretrained(folder)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def bigru_classifier(vocab_size: int, num_labels: int):  # noqa: ANN201
    """tamrin's TextClassifier as a plain module: embedding 64, packed BiGRU 64, mean+max pooling, linear."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class BiGRUClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, 64, padding_idx=0)
            self.rnn = nn.GRU(64, 64, bidirectional=True, batch_first=True)
            self.dropout = nn.Dropout(0.1)
            self.head = nn.Linear(4 * 64, num_labels)

        def forward(self, input_ids, attention_mask, labels=None):  # noqa: ANN001, ANN202
            lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
            embedded = self.dropout(self.embedding(input_ids))
            packed = nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
            states, _ = nn.utils.rnn.pad_packed_sequence(
                self.rnn(packed)[0], batch_first=True, total_length=input_ids.shape[1]
            )
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            maximum = states.masked_fill(mask == 0, float("-inf")).amax(dim=1)
            maximum = torch.where(torch.isfinite(maximum), maximum, torch.zeros_like(maximum))
            logits = self.head(self.dropout(torch.cat([mean, maximum], dim=-1)))
            loss = None if labels is None else F.cross_entropy(logits, labels)
            return {"loss": loss, "logits": logits}

    return BiGRUClassifier()


def first_step_hf(n: int, root: Path) -> None:
    """Load, tokenise and train one step with `datasets` + `transformers.Trainer`; print as FirstStep does."""
    import os

    import datasets
    import torch  # noqa: F401  (imported before the clock reads `imports_s`, as on the tamrin paths)
    from transformers import Trainer, TrainerCallback, TrainingArguments

    imports_s = process_age()
    files = str(root / str(n) / "data" / "train-00000-of-00001.parquet")
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    tokenizer = fast_tokenizer(ds)

    def tokenize(batch):  # noqa: ANN001, ANN202
        return tokenizer(batch["text"], truncation=True, padding="max_length", max_length=MAX_LENGTH)

    ds = ds.map(tokenize, batched=True, remove_columns=["text"])
    ds = ds.class_encode_column("label").rename_column("label", "labels")
    loaded_s = process_age()

    class FirstStepCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN003, ANN202
            print(first_step_result(imports_s, loaded_s), flush=True)
            os._exit(0)

    arguments = TrainingArguments(
        output_dir=str(root / "runs" / f"hf-{n}"),
        per_device_train_batch_size=64,
        max_steps=1,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    model = bigru_classifier(len(tokenizer), ds.features["labels"].num_classes)
    Trainer(model=model, args=arguments, train_dataset=ds, callbacks=[FirstStepCallback()]).train()
