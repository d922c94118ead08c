"""Every code block of README.md and docs/*.md runs, so a doc example that stops working fails here.

The rules (HF's doctests idea, kept simple):

- **What runs:** every ```python block, and every ```bash block (with `bash -e`, in the same working
  directory, `python` and `tamrin` from this interpreter's environment). Other languages (text,
  yaml, console, csv, ...) show output or files and are not run.
- **Fragments:** a block whose nearest non-blank line above the opening fence is
  `<!-- fragment: why -->` is not run (a signature, a partial snippet, or a call that needs the
  network, a multi-process launch or minutes of training); its test is skipped with that reason.
  Nothing else is skipped.
- **One page, one reader:** each page runs in its own Python process and its own fresh temporary
  working directory; its blocks run in document order in one namespace, as a reader who runs the
  page top to bottom would, so a later block may use what an earlier one defined. A block marked
  `<!-- run-last: why -->` runs after the page's other blocks (it reads what a later block makes).
- **Stand-ins:** names that a page uses for the reader's own objects (`model`, `config`, `train`,
  `val`, ...) without defining them come from `STAND_INS` below: tiny objects put into the page's
  namespace before its first block. Only the listed names are put there (no module, not `torch`),
  so a block that forgets an import still fails.
- **Reports:** each block is one test, named `page:line`. A page's process runs once, when the first
  of its tests runs; once a block fails, the page's later blocks are reported as not run.

The whole file takes well under a minute: blocks that train are sized to a few seconds.
Run the checks of one page: `python -m pytest tests/test_docs_examples.py -k curriculum`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import traceback
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = ("python", "bash")
PAGE_TIMEOUT_S = 240

# -- stand-ins for the reader's own objects --------------------------------------------------------------

_CLASSIFICATION = """
import torch
from tamrin import TrainerConfig

class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)

    def forward(self, x, labels=None):
        logits = self.linear(x)
        return {"logits": logits} if labels is None else {"logits": logits, "loss": torch.nn.functional.cross_entropy(logits, labels)}

def items(count, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 4, generator=generator)
    return [{"x": row, "labels": (row.sum() > 0).long(), "length": torch.tensor(index % 7)} for index, row in enumerate(x)]

model = Classifier()
train, val = items(64, 0), items(32, 1)
config = TrainerConfig(output_dir="stand-in", task="text_classification", num_epochs=2, batch_size=8,
                       metrics=["accuracy"], progress="none")
difficulty = "length"  # a column name: docs/curriculum.md lists it among the valid `scores`
"""

_TOKENS = """
import torch

class BagOfWords(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(50, 8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, input_ids, labels=None):
        logits = self.head(self.embed(input_ids))
        return {"logits": logits} if labels is None else {"logits": logits, "loss": torch.nn.functional.cross_entropy(logits, labels)}

def items(count, seed, vocab=50, labels=2):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (count, 8), generator=generator)
    return [{"input_ids": row, "attention_mask": torch.ones(8, dtype=torch.long), "labels": row[0] % labels} for row in ids]

model, student, teacher = BagOfWords(), BagOfWords(), BagOfWords()
train, val = items(64, 0), items(32, 1)
"""

_BERT_DATA_AND_PLATE = """
from PIL import Image

Image.new("L", (128, 32), color=255).save("plate.png")
""" + _TOKENS.replace(
    "train, val = items(64, 0), items(32, 1)", "train, val = items(64, 0, 8000, 3), items(32, 1, 8000, 3)"
)

STAND_INS: dict[str, tuple[str, tuple[str, ...]]] = {
    "docs/callbacks.md": (_CLASSIFICATION, ("model", "config", "train", "val")),
    "docs/curriculum.md": (_CLASSIFICATION, ("model", "config", "train", "difficulty")),
    "docs/training.md": (_TOKENS, ("model", "train", "val", "student", "teacher")),
    "docs/models.md": (_BERT_DATA_AND_PLATE, ("train", "val")),
}
"""Page -> (code run in a separate namespace in the page's working directory, the names it hands the page)."""


# -- the blocks of a page ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    fragment: str | None  # the reason, when marked as a fragment
    run_last: bool

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*(fragment|run-last)\s*(?::\s*(.*?))?\s*-->\s*$")


def read_blocks(page: str) -> list[Block]:
    """The runnable-language blocks of `page`, in document order, with their markers."""
    lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if match.group(1) in RUN_LANGUAGES:
            marker = _marker_above(lines, index)
            blocks.append(
                Block(
                    page=page,
                    line=index + 1,
                    language=match.group(1),
                    code="\n".join(lines[index + 1 : end]) + "\n",
                    fragment=(marker[1] or "marked as a fragment") if marker and marker[0] == "fragment" else None,
                    run_last=bool(marker and marker[0] == "run-last"),
                )
            )
        index = end + 1
    return blocks


def _marker_above(lines: list[str], fence: int) -> tuple[str, str | None] | None:
    above = fence - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    match = _MARKER.match(lines[above].strip()) if above >= 0 else None
    return (match.group(1), match.group(2)) if match else None


def running_order(blocks: list[Block]) -> list[Block]:
    return [block for block in blocks if not block.run_last] + [block for block in blocks if block.run_last]


ALL_BLOCKS = [block for page in PAGES for block in read_blocks(page)]


# -- the page runner (in its own process) ------------------------------------------------------------------


def run_page(page: str, results_path: Path) -> None:
    """Run `page`'s blocks in the current directory; write {line: {"status", "error", "seconds"}}."""
    module = types.ModuleType("doc_" + re.sub(r"\W", "_", page))
    sys.modules[module.__name__] = module  # dataclasses and pickling look their module up
    stand_in = STAND_INS.get(page)
    if stand_in is not None:
        scratch: dict[str, Any] = {"__name__": f"{module.__name__}_stand_ins"}
        exec(compile(textwrap.dedent(stand_in[0]), "<stand-ins>", "exec"), scratch)
        for name in stand_in[1]:
            setattr(module, name, scratch[name])
    results: dict[int, dict[str, Any]] = {}
    failed: Block | None = None
    for block in running_order(read_blocks(page)):
        if block.fragment is not None:
            continue
        if failed is not None:
            results[block.line] = {"status": "not run", "error": f"the block at {failed.name} failed first"}
            continue
        start = time.perf_counter()
        print(f"\n===== {block.name} ({block.language}) =====", flush=True)
        try:
            _run_block(block, module)
            results[block.line] = {"status": "passed"}
        except BaseException:  # a SystemExit or KeyboardInterrupt of a block is its failure too
            results[block.line] = {"status": "failed", "error": traceback.format_exc()}
            failed = block
        results[block.line]["seconds"] = round(time.perf_counter() - start, 2)
        results_path.write_text(json.dumps(results))  # after each block: a timeout keeps what ran
    results_path.write_text(json.dumps(results))


def _run_block(block: Block, module: types.ModuleType) -> None:
    if block.language == "python":
        exec(compile(block.code, block.name, "exec"), module.__dict__)
        return
    completed = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code], text=True, capture_output=True)
    print(completed.stdout, completed.stderr, flush=True)
    if completed.returncode != 0:
        raise RuntimeError(f"bash exited with {completed.returncode}:\n{completed.stdout}\n{completed.stderr}")


# -- the tests ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class PageRun:
    results: dict[int, dict[str, Any]]
    output: str


@pytest.fixture(scope="session")
def page_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PageRun]:
    return {}


def _page_run(page: str, runs: dict[str, PageRun], tmp_path_factory: pytest.TempPathFactory) -> PageRun:
    if page not in runs:
        workdir = tmp_path_factory.mktemp(re.sub(r"\W", "_", page))
        results_path = workdir.parent / f"{workdir.name}.results.json"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "HF_HUB_OFFLINE": "1",  # a block that reaches for the Hub fails at once, and never leaves the machine
            "HF_ENDPOINT": "http://127.0.0.1:9",
            "MPLBACKEND": "Agg",
        }
        command = [sys.executable, str(Path(__file__)), page, str(results_path)]
        try:
            completed = subprocess.run(
                command, cwd=workdir, env=environment, text=True, capture_output=True, timeout=PAGE_TIMEOUT_S
            )
            output = completed.stdout + completed.stderr
        except subprocess.TimeoutExpired as expired:
            output = f"{expired.stdout or ''}{expired.stderr or ''}\n(the page ran over {PAGE_TIMEOUT_S} s)"
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        runs[page] = PageRun({int(line): result for line, result in results.items()}, output)
    return runs[page]


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[block.name for block in ALL_BLOCKS])
def test_doc_block_runs(block: Block, page_runs: dict[str, PageRun], tmp_path_factory: pytest.TempPathFactory) -> None:
    if block.fragment is not None:
        pytest.skip(f"fragment: {block.fragment}")
    run = _page_run(block.page, page_runs, tmp_path_factory)
    result = run.results.get(block.line)
    if result is None:
        pytest.fail(f"{block.name} did not run; the page's output ends with:\n{run.output[-4000:]}", pytrace=False)
    if result["status"] != "passed":
        message = f"{block.name} {result['status']}:\n{result['error']}\n--- the page's output (tail) ---\n{run.output[-3000:]}"
        pytest.fail(message, pytrace=False)


def test_the_pages_have_blocks_to_run() -> None:
    """Guards the parser: a fence it stops recognising would make every page pass with nothing run."""
    assert sum(block.fragment is None for block in ALL_BLOCKS) >= 20
    assert any(block.page == "README.md" and block.language == "python" for block in ALL_BLOCKS)


def test_a_marker_is_read_from_the_nearest_line_above_the_fence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- fragment: a signature -->\n```python\nf(...)\n```\n\n<!-- run-last: reads b -->\n\n```python\nprint(b)\n```\n"
        "text\n```python\nb = 1\n```\n```yaml\nnot: run\n```\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    blocks = read_blocks("page.md")
    assert [(b.line, b.fragment, b.run_last) for b in blocks] == [
        (2, "a signature", False),
        (8, None, True),
        (12, None, False),
    ]
    assert [b.line for b in running_order(blocks)] == [2, 12, 8]


if __name__ == "__main__":
    run_page(sys.argv[1], Path(sys.argv[2]))
