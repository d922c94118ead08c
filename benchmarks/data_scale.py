"""Benchmark: start-up time and peak RSS to the first training step, by corpus size and data path.

    python benchmarks/data_scale.py generate N ROOT          # ROOT/N: a dataset folder of N rows
    python benchmarks/data_scale.py first-step PATH N ROOT   # one measurement, printed as JSON
    python benchmarks/data_scale.py throughput PATH ROOT     # steady-state samples/s, PATH vs tensors
    python benchmarks/data_scale.py resume N ROOT            # first batch at 99% of the epoch

Each measurement runs in its own process (`first-step` is meant to be started by the shell, one
process each, so that peak RSS is that path's alone). PATH is:

- `list`: the list-of-dicts path of tamrin before Arrow (`TextClassificationDataset(config,
  rows=<list of dicts>)`), read from the parquet file with `pyarrow ... .to_pylist()`; run it with
  PYTHONPATH pointing at a checkout of that version (main at 2c063f4).
- `arrow`: `tamrin.datasets.Dataset.load(ROOT/N)` (rows in Arrow, encoded by a cached `map`);
  the first run encodes and caches, the second reads the cache (HF_DATASETS_CACHE decides where).
- `hf`: the same work with plain `datasets` + `transformers.Trainer` (`load_dataset("parquet")`, a
  `tokenizers` WordPiece tokenizer, `ds.map(tokenize, batched=True)`, `class_encode_column`, the
  same BiGRU as an `nn.Module`): data_scale_hf.py. Run it twice too: `map` caches by fingerprint.

The clock starts when the interpreter starts (imports included: `time.time()` against the
process's start time from /proc) and stops at the end of the first training step. Peak RSS is
`VmHWM` from /proc/self/status (the process's own high-water mark; `ru_maxrss` is not: Linux
carries it over an exec, so a process started from a larger one reports its parent's peak), with
`RssAnon` (heap) and `RssFile` (mapped file pages) at that moment. The model is the text
classifier of the recipe (BiGRU 64), batch 64.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from pathlib import Path

WORDS = {
    "positive": ["good", "great", "lovely", "excellent", "fine", "superb"],
    "negative": ["bad", "awful", "poor", "terrible", "dull", "weak"],
    "neutral": ["okay", "average", "plain", "usual", "normal", "fair"],
}
FILLER = ["the", "a", "this", "that", "movie", "film", "book", "food", "service", "room"]
FILLER += ["place", "staff", "day", "was", "is", "really", "quite", "very", "so"]


def process_age() -> float:
    """Seconds since this process started (so the interpreter's start and imports count)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - start


def generate(n: int, root: Path) -> Path:
    """ROOT/N: `dataset_config.yaml` and `data/train-00000-of-00001.parquet`, N synthetic sentences."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / str(n)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "dataset_config.yaml").write_text("name: text_classification\nmax_length: 32\n")
    rng = np.random.default_rng(0)
    labels = list(WORDS)
    # 100k distinct sentences, repeated to N rows (the data's size, not its variety, is what is measured)
    base_labels = rng.integers(0, 3, 100_000)
    filler = rng.integers(0, len(FILLER), (100_000, 7))
    cue = rng.integers(0, 6, 100_000)
    sentences = [
        " ".join(
            [FILLER[f] for f in filler[i, :4]]
            + [WORDS[labels[base_labels[i]]][cue[i]]]
            + [FILLER[f] for f in filler[i, 4:]]
        )
        for i in range(100_000)
    ]
    writer = None
    chunk = 1_000_000
    for start in range(0, n, chunk):
        index = np.arange(start, min(start + chunk, n)) % 100_000
        table = pa.table(
            {
                "text": pa.array([sentences[i] for i in index]),
                "label": pa.array([labels[base_labels[i]] for i in index]),
            }
        )
        writer = writer or pq.ParquetWriter(folder / "data" / "train-00000-of-00001.parquet", table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return folder


def memory_now() -> dict[str, float]:
    """Peak RSS (VmHWM) and RSS now, split into anonymous memory (the heap, Python objects) and file
    pages (memory-mapped Arrow files: clean pages the kernel can drop under pressure), in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    names = {"peak_rss_mib": "VmHWM", "rssanon_mib": "RssAnon", "rssfile_mib": "RssFile"}
    return {key: round(int(fields[name].split()[0]) / 1024, 1) for key, name in names.items()}


def first_step_result(imports_s: float, loaded_s: float) -> str:
    """The JSON line every path prints at the end of its first step (what the docs' tables quote)."""
    result = {
        "imports_s": round(imports_s, 2),
        "dataset_ready_s": round(loaded_s, 2),
        "seconds_to_first_step": round(process_age(), 2),
        **memory_now(),
    }
    return json.dumps(result)


class FirstStep:
    """A callback that records time and peak RSS at the end of the first step, then ends the process."""

    imports_s = 0.0  # process age once torch and tamrin are imported (the floor under every path)
    loaded_s = 0.0  # process age once the dataset is built

    def on_step_end(self, trainer, loss=None):  # noqa: ANN001
        print(first_step_result(self.imports_s, self.loaded_s), flush=True)
        os._exit(0)


def text_classifier(dataset):  # noqa: ANN001, ANN201
    from tamrin.models.text_classifier import TextClassifier, TextClassifierConfig

    preprocessor = dataset.preprocessor
    config = TextClassifierConfig(
        vocab_size=preprocessor.tokenizer.vocab_size if hasattr(preprocessor, "tokenizer") else 8000,
        num_labels=len(preprocessor.labels) if hasattr(preprocessor, "labels") else 3,
        embedding_dim=64,
        hidden_size=64,
    )
    return TextClassifier(config)


def load_dataset(path: str, folder: Path):  # noqa: ANN201
    if path == "arrow":
        from tamrin.datasets import Dataset

        return Dataset.load(folder)
    import pyarrow.parquet as pq

    from tamrin.datasets.tasks.text_classification import TextClassificationConfig, TextClassificationDataset

    rows = pq.read_table(folder / "data" / "train-00000-of-00001.parquet").to_pylist()
    return TextClassificationDataset(TextClassificationConfig(max_length=32), rows=rows)


def first_step(path: str, n: int, root: Path) -> None:
    from tamrin import Trainer, TrainerConfig
    from tamrin.trainer.callbacks import Callback

    FirstStep.imports_s = process_age()
    dataset = load_dataset(path, root / str(n))
    FirstStep.loaded_s = process_age()
    config = TrainerConfig(
        output_dir=str(root / "runs" / f"{path}-{n}"),
        task="text_classification",
        batch_size=64,
        max_steps=1,
        progress="none",
        overwrite_output_dir=True,
        device="cpu",
    )
    callback = type("FirstStepCallback", (FirstStep, Callback), {})()
    Trainer(model=text_classifier(dataset), config=config, train_dataset=dataset, callbacks=[callback]).train()


def throughput(path: str, root: Path, steps: int = 200) -> None:
    """Samples/s of the training loop over PATH's 1e5-row dataset against the same samples as tensors."""
    import torch

    from tamrin import Trainer, TrainerConfig

    dataset = load_dataset(path, root / "100000")
    items = [dataset[i] for i in range(64 * steps)]
    tensors = [{k: (v.clone() if hasattr(v, "clone") else v) for k, v in item.items()} for item in items]
    results = {}
    for name, data in (("dataset", dataset), ("in-memory tensors", tensors)):
        torch.manual_seed(0)
        config = TrainerConfig(output_dir=str(root / "runs" / f"tp-{name}"), task="text_classification", batch_size=64,
                               max_steps=steps, progress="none", overwrite_output_dir=True, device="cpu",
                               save_steps=10**9, log_steps=10**9)  # fmt: skip
        trainer = Trainer(model=text_classifier(dataset), config=config, train_dataset=data,
                          data_collator=dataset.data_collator)  # fmt: skip
        start = time.perf_counter()
        trainer.train()
        results[name] = round(64 * steps / (time.perf_counter() - start), 1)
    print(json.dumps({"path": path, "samples_per_s": results}), flush=True)


def resume(n: int, root: Path) -> None:
    """Seconds to the first batch of a resume at 99% of an epoch: RangedSampler over the Arrow dataset,
    and an HF stream of the parquet file (`load_dataset(..., streaming=True)`) resumed from its state."""
    import datasets
    from torch.utils.data import DataLoader

    from tamrin.datasets import Dataset, RangedSampler

    at = int(n * 0.99)
    dataset = Dataset.load(root / str(n))
    start = time.perf_counter()
    sampler = RangedSampler(dataset, 64, shuffle=True, seed=0)
    sampler.set_epoch(0)
    sampler.set_start_index(at)
    next(iter(DataLoader(dataset, batch_size=64, sampler=sampler, collate_fn=dataset.data_collator)))
    ranged = time.perf_counter() - start

    files = str(root / str(n) / "data" / "train-00000-of-00001.parquet")
    stream = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    start = time.perf_counter()
    for _ in itertools.islice(stream, at):  # the first run's way to 99%: read every example
        pass
    reach = time.perf_counter() - start
    state = stream.state_dict()
    expected = next(iter(stream))
    stream_again = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    start = time.perf_counter()
    stream_again.load_state_dict(state)
    first = next(iter(stream_again))
    streamed = time.perf_counter() - start
    assert first == expected, (first, expected)
    print(json.dumps({"n": n, "at": at, "ranged_sampler_first_batch_s": round(ranged, 3),
                      "stream_resume_first_example_s": round(streamed, 3), "stream_read_to_99pct_s": round(reach, 1),
                      "stream_state": state}), flush=True)  # fmt: skip


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "generate":
        print(generate(int(argv[1]), Path(argv[2])))
    elif command == "first-step" and argv[1] == "hf":
        from data_scale_hf import first_step_hf  # a sibling file; imports no tamrin

        first_step_hf(int(argv[2]), Path(argv[3]))
    elif command == "first-step":
        first_step(argv[1], int(argv[2]), Path(argv[3]))
    elif command == "throughput":
        throughput(argv[1], Path(argv[2]))
    elif command == "resume":
        resume(int(argv[1]), Path(argv[2]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
