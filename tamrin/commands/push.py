"""`tamrin push OUTPUT_DIR REPO_ID [--private] [--message M] [--revision R]`: publish a run on the Hub.

Pushes, in one commit, the run's final model (`OUTPUT_DIR/model`, as `tamrin train` writes it) or, when
there is none, the newest valid checkpoint in `OUTPUT_DIR/checkpoints`, together with the run's CSV logs
and a model card. OUTPUT_DIR may also be one saved directory itself (a checkpoint). The token comes from
HF_TOKEN or `hf auth login`.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from omegaconf import OmegaConf

from tamrin.recipes import FINAL_MODEL_DIR
from tamrin.trainer.checkpoint.files import MANIFEST, TRAIN_DIR, latest_valid_checkpoint, verify_checkpoint
from tamrin.trainer.checkpoint.publishing import push_checkpoint_to_hub
from tamrin.trainer.logs.logger import CSV_FILENAME

__all__ = ["register", "find_push_source"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "push", help="push a run's final model (or newest checkpoint), logs and a model card to the Hub"
    )
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", help="the run's output_dir (or one checkpoint directory)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="the Hub repo, 'user/repo' (created if needed)")
    parser.add_argument("--private", action="store_true", help="create the repo as private (if it does not exist)")
    parser.add_argument("--message", "-m", default=None, help="the commit message")
    parser.add_argument("--revision", default=None, help="the branch to push to (created if needed; default: main)")
    parser.set_defaults(handler=run)


def find_push_source(output_dir: str | Path) -> Path:
    """The directory `tamrin push` publishes: the final model, else the newest valid checkpoint.

    Raises:
        FileNotFoundError: `output_dir` holds neither (the message says where it looked).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"No output directory at {str(output_dir)!r}.")
    if (output_dir / MANIFEST).is_file():  # one saved directory, given directly
        problem = verify_checkpoint(output_dir)
        if problem:
            raise FileNotFoundError(f"Cannot push {output_dir}: {problem}.")
        return output_dir
    final = output_dir / FINAL_MODEL_DIR
    if final.is_dir():
        problem = verify_checkpoint(final)
        if problem is None:
            return final
        warnings.warn(f"Not pushing {final}: {problem}. Pushing the newest valid checkpoint instead.", stacklevel=2)
    checkpoint = latest_valid_checkpoint(output_dir / "checkpoints")
    if checkpoint is None:
        raise FileNotFoundError(
            f"Nothing to push in {output_dir}: no final model in {final} and no valid checkpoint in "
            f"{output_dir / 'checkpoints'}. Pass the output_dir of a run (or a checkpoint directory)."
        )
    return checkpoint


def run(args: argparse.Namespace) -> int:
    source = find_push_source(args.output_dir)
    logs = _run_logs(Path(args.output_dir), source)
    sha = push_checkpoint_to_hub(
        source, args.repo_id, logs=logs, commit_message=args.message, private=args.private, revision=args.revision
    )
    print(f"Pushed {source} to {args.repo_id} ({args.revision or 'main'}), commit {sha}.")
    return 0


def _run_logs(output_dir: Path, source: Path) -> Path | None:
    """The run's own training_logs.csv (the most complete copy), found via the saved trainer config."""
    if source == output_dir:
        return None  # a checkpoint given directly: push the logs it holds, if any
    config_path = source / TRAIN_DIR / "trainer_config.yaml"
    logs_dir = (OmegaConf.load(config_path).get("logs_dir") if config_path.is_file() else None) or "logs"
    path = output_dir / str(logs_dir) / CSV_FILENAME
    return path if path.is_file() else None
