"""Peak memory of `Dataset.load` for a text-classification folder, by corpus size (should be ~flat).

    python benchmarks/dataset_scale.py --rows 100000 1000000 --root /tmp/dataset_scale

Writes each corpus once (dataset_config.yaml + data/train-00000-of-00001.parquet), then in a fresh
process per size: `Dataset.load(folder)`, reads 1000 random items and the `confidence` column (as a
curriculum would). Each size is loaded twice: the first run fills the datasets cache (Arrow rows,
tokenizer, encoding), the second reads it.

Memory is the child's `VmHWM` from /proc/self/status, which starts afresh at exec. Not `ru_maxrss`:
Linux carries it over fork + exec, so a child started by a parent that wrote a big corpus reports
the parent's peak. `RssAnon` (heap) is printed beside it: memory-mapped Arrow pages are file-backed
and the kernel may drop them, heap may not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

WORDS = np.array(["good", "bad", "plot", "acting", "film", "dull", "bright", "slow", "fine", "awful"])


def write_corpus(folder: Path, rows: int, chunk: int = 100_000) -> None:
    """A seeded corpus of short sentences, written in chunks so the writer stays small too."""
    target = folder / "data" / "train-00000-of-00001.parquet"
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    (folder / "dataset_config.yaml").write_text("name: text_classification\nmax_length: 16\nvocab_size: 500\n")
    rng = np.random.default_rng(0)
    schema = pa.schema([("text", pa.string()), ("label", pa.string()), ("confidence", pa.float32())])
    with pq.ParquetWriter(target, schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            words = WORDS[rng.integers(0, len(WORDS), size=(n, 6))]
            texts = [" ".join(row) for row in words]
            labels = np.where(rng.random(n) < 0.5, "pos", "neg")
            table = pa.table({"text": texts, "label": labels, "confidence": rng.random(n).astype("float32")})
            writer.write_table(table)


def status_mib() -> dict[str, float]:
    """VmHWM (peak resident) and RssAnon/RssFile (now) of this process, in MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def child(folder: str) -> dict[str, float]:
    start = time.perf_counter()
    from tamrin.datasets import Dataset

    imported = status_mib()["VmHWM"]
    dataset = Dataset.load(folder)
    loaded = time.perf_counter() - start
    for index in np.random.default_rng(1).integers(0, len(dataset), size=1000):
        dataset[int(index)]
    dataset.column("confidence")
    return {"load_s": loaded, "imports_mib": imported, **status_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, nargs="+", default=[1e5, 1e6])
    parser.add_argument("--root", type=Path, default=Path("/tmp/dataset_scale"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    env = {**os.environ, "HF_DATASETS_CACHE": str(args.root / "hf_datasets_cache")}
    print("| rows | run | load (s) | peak RSS (MiB) | of it after imports | RssAnon (MiB) | RssFile (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for rows in (int(r) for r in args.rows):
        folder = args.root / f"corpus_{rows}"
        write_corpus(folder, rows)
        for run in ("first", "second"):
            out = subprocess.run([sys.executable, __file__, "--child", str(folder)], env=env, capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
            f = json.loads(out.strip().splitlines()[-1])
            grown = f["VmHWM"] - f["imports_mib"]
            print(f"| {rows:.0e} | {run} | {f['load_s']:.1f} | {f['VmHWM']:.0f} | {grown:.0f} | "
                  f"{f['RssAnon']:.0f} | {f['RssFile']:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
