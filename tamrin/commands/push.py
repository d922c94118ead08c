"""`tamrin push OUTPUT_DIR REPO_ID [options]`: publish a run on the Hub.

Pushes, in one commit, the run's final model (`OUTPUT_DIR/model`, as `tamrin train` writes it) or, when
there is none, the newest valid checkpoint in `OUTPUT_DIR/checkpoints`, together with the run's CSV logs,
its recipe.yaml (so that `tamrin evaluate REPO_ID` can rebuild its data) and a model card. OUTPUT_DIR may
also be one saved directory itself (a checkpoint). The push deletes nothing in the repo unless `--delete`
names it. The token comes from `--token`, HF_TOKEN or `hf auth login`.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from tamrin.recipes import FINAL_MODEL_DIR, RECIPE_FILENAME
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
    parser.add_argument(
        "--private",
        action="store_true",
        default=None,
        help="create the repo as private (default: the namespace's default; an existing repo keeps its own)",
    )
    parser.add_argument("--message", "-m", default=None, help="the commit message")
    parser.add_argument("--revision", default=None, help="the branch to push to (created if needed; default: main)")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    parser.add_argument("--token", default=None, help="a Hub token (default: HF_TOKEN or the stored login)")
    parser.add_argument(
        "--no-optimizer",
        dest="push_optimizer",
        action="store_false",
        help="leave out what only a resume needs (optimizer, scheduler, RNG, callbacks state)",
    )
    parser.add_argument("--no-logs", dest="push_logs", action="store_false", help="leave out the CSV logs")
    parser.add_argument(
        "--delete",
        action="append",
        default=None,
        metavar="PATTERN",
        help="also delete the repo's files matching this glob (repeatable; e.g. 'train/*'); default: none",
    )
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
    recipe = Path(args.output_dir) / RECIPE_FILENAME
    sha = push_checkpoint_to_hub(
        source,
        args.repo_id,
        logs=logs,
        extra_files={recipe.name: recipe} if source != Path(args.output_dir) and recipe.is_file() else None,
        commit_message=args.message,
        private=args.private,
        push_optimizer=args.push_optimizer,
        push_logs=args.push_logs,
        revision=args.revision,
        token=args.token,
        create_pr=args.create_pr,
        delete_patterns=args.delete,
    )
    where = f"pull request {sha.pr_url}" if sha.pr_url else args.revision or "main"
    print(f"Pushed {source} to {args.repo_id} ({where}), commit {sha}.")
    return 0


def _run_logs(output_dir: Path, source: Path) -> Path | None:
    """The run's own training_logs.csv (the most complete copy), found via the saved trainer config."""
    if source == output_dir:
        return None  # a checkpoint given directly: push the logs it holds, if any
    config_path = source / TRAIN_DIR / "trainer_config.yaml"
    config = OmegaConf.load(config_path) if config_path.is_file() else None
    logs_dir = (config.get("logs_dir") if isinstance(config, DictConfig) else None) or "logs"
    path = output_dir / str(logs_dir) / CSV_FILENAME
    return path if path.is_file() else None
