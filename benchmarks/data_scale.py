"""Start-up time and peak memory to the first training step, by corpus size: Arrow rows vs a list of dicts.

    python benchmarks/data_scale.py --rows 100000 1000000 10000000 --root /tmp/data_scale

For each size it writes a text-classification corpus once (a dataset folder: dataset_config.yaml +
data/train-00000-of-00001.parquet of generated sentences), then runs, each in a fresh process:

- `arrow (first run)`: `Dataset.load(folder)`, the model, one training step. Converts the file to Arrow,
  trains the tokenizer, encodes every row into the datasets cache.
- `arrow (second run)`: the same again; the cache holds the Arrow rows, the preprocessor and the encoding.
- `list of dicts`: the pre-Arrow path re-enacted: every row read into a Python dict (`read_records`),
  the tokenizer trained on them, every row encoded into Python lists, then one training step.

Peak RSS is the process's high-water mark, `VmHWM` of /proc/self/status (the interpreter, torch and
the model included: compare sizes, not absolutes). Not `ru_maxrss`: Linux carries that over `exec`
from the parent, so every child would report the generator's peak. Printed as a Markdown table;
machines are noisy, so read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [f"{stem}{suffix}" for stem in ("good", "bad", "plot", "act", "film", "dull", "bright", "slow") for suffix in
         ("", "ly", "er", "est", "ness", "ful", "less", "ish")]  # fmt: skip


def write_corpus(folder: Path, rows: int, seed: int = 0) -> None:
    """A dataset folder of `rows` generated 8-word sentences with a 3-class label, written in chunks."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (folder / "dataset_config.yaml").is_file():
        return
    (folder / "data").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    path = folder / "data" / "train-00000-of-00001.parquet"
    with pq.ParquetWriter(str(path), pa.schema([("text", pa.string()), ("label", pa.string())])) as writer:
        for start in range(0, rows, 1_000_000):
            count = min(1_000_000, rows - start)
            picks = words[rng.integers(len(words), size=(count, 8))]
            texts = [" ".join(row) for row in picks.tolist()]
            labels = np.array(["negative", "neutral", "positive"])[rng.integers(3, size=count)].tolist()
            writer.write_table(pa.table({"text": texts, "label": labels}))
    (folder / "dataset_config.yaml").write_text(
        "name: text_classification\nmax_length: 16\nvocab_size: 500\n", encoding="utf-8"
    )


def peak_rss_mib() -> float:
    """This process's peak resident memory since its exec (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def first_step(folder: str, mode: str) -> dict[str, float]:
    """Build the data and a model and train one step, in this process; seconds and peak RSS (MiB)."""
    start = time.perf_counter()
    from tamrin import Trainer, TrainerConfig
    from tamrin.datasets import Dataset, TextClassificationDataset
    from tamrin.recipes import build_model_for_data

    if mode == "list":
        from tamrin.datasets.readers import read_records
        from tamrin.datasets.tasks.text_classification import TextClassificationConfig
        from tamrin.preprocessors import TextPreprocessor, Tokenizer

        rows = read_records(Path(folder) / "data" / "train-00000-of-00001.parquet", ["text", "label"])
        tokenizer = Tokenizer.train((row["text"] for row in rows), 500)
        preprocessor = TextPreprocessor(tokenizer, sorted({row["label"] for row in rows}), 16)
        samples = [{"input_ids": preprocessor.encode(row["text"]), "labels": preprocessor.label_id(row["label"], "")}
                   for row in rows]  # fmt: skip
        dataset = TextClassificationDataset(  # the model's sizes come from it; the step reads `samples`
            TextClassificationConfig(max_length=16, vocab_size=500), rows=rows[:64], preprocessor=preprocessor
        )
        del rows
        train: object = [
            {"input_ids": __import__("torch").tensor(s["input_ids"]), "labels": __import__("torch").tensor(s["labels"])}
            for s in samples[:64]
        ]
        collator = dataset.data_collator
    else:
        dataset = Dataset.load(folder)
        train, collator = dataset, dataset.data_collator
    loaded = time.perf_counter() - start
    model = build_model_for_data({"name": "text_classifier", "embedding_dim": 16, "hidden_size": 16}, dataset)
    with tempfile.TemporaryDirectory() as out:
        config = TrainerConfig(output_dir=out, max_steps=1, batch_size=32, progress="none", save_steps=None)
        Trainer(model=model, config=config, train_dataset=train, data_collator=collator).train()
    return {
        "load_s": loaded,
        "first_step_s": time.perf_counter() - start,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_child(folder: Path, mode: str) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(folder), "--mode", mode]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, nargs="+", default=[1e5, 1e6])
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "tamrin_data_scale")
    parser.add_argument("--list-up-to", type=float, default=1e6, help="largest size for the list-of-dicts path")
    parser.add_argument("--fresh-cache", action="store_true", help="empty HF_DATASETS_CACHE under --root first")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="arrow", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(first_step(args.child, args.mode)))
        return
    cache = args.root / "hf_datasets_cache"
    if args.fresh_cache and cache.exists():
        shutil.rmtree(cache)
    os.environ["HF_DATASETS_CACHE"] = str(cache)
    print("| rows | path | load (s) | to first step (s) | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    for rows in (int(r) for r in args.rows):
        folder = args.root / f"corpus_{rows}"
        write_corpus(folder, rows)
        runs = [("arrow (first run)", "arrow"), ("arrow (second run)", "arrow")]
        if rows <= args.list_up_to:
            runs.append(("list of dicts", "list"))
        for label, mode in runs:
            figures = run_child(folder, mode)
            print(f"| {rows:.0e} | {label} | {figures['load_s']:.1f} | {figures['first_step_s']:.1f} | "
                  f"{figures['peak_rss_mib']:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
