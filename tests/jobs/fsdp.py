"""The packaged text_generation recipe, shrunk, trained with a chosen strategy; for the FSDP tests.

    PYTHONPATH=tests python -m torch.distributed.run --nproc_per_node N -m jobs.fsdp OUT [--strategy fsdp]
        [--kill-step K] [recipe overrides ...]

It resumes from OUT's latest checkpoint (so a killed job is restarted with the same command), then
saves the final model to OUT/model as `tamrin train` does, then once more as `push_to_hub` does (each
process into a temporary folder of its own; OUT/push_files.json lists what the main one got). Each process writes OUT/shards_{rank}.json:
for every parameter of the model it trained, its type, placements, local shape and global shape,
so a test can see that the parameters were really sharded.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from jobs.builder import KillAt, finish_distributed_job, job_parser
from tamrin.recipes import load_recipe
from tamrin.recipes.building import build_trainer

SMALL = [  # a 2-block Transformer (~40k parameters), 16 steps of 2 processes x 8 samples
    "model.embed_dim=32", "model.num_layers=2", "model.num_heads=2", "model.dropout=0.1",
    "dataset.num_samples=256", "dataset.eval_num_samples=24",
    "trainer.batch_size=8", "trainer.eval_batch_size=8", "trainer.gradient_accumulation_steps=2",
    "trainer.save_steps=3", "trainer.log_steps=2", "trainer.eval_steps=8", "trainer.warmup_steps=2",
    "trainer.save_total_limit=null", "trainer.resume_from_checkpoint=true", "trainer.progress=none",
    "trainer.device=cpu", "trainer.max_grad_norm=0.05",  # clips every update: the global norm of sharded grads
]  # fmt: skip


def shard_report(model) -> dict[str, dict[str, object]]:
    """What each parameter of `model` is on this process (a DTensor's placements and local shape)."""
    report = {}
    for name, parameter in model.named_parameters():
        local = parameter.to_local() if hasattr(parameter, "to_local") else parameter
        report[name] = {
            "type": type(parameter).__name__,
            "placements": [str(p) for p in getattr(parameter, "placements", ())],
            "local_shape": list(local.shape),
            "shape": list(parameter.shape),
        }
    return report


def main(argv: list[str]) -> None:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="fsdp")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    output = Path(args.output_dir)
    recipe = load_recipe(
        "text_generation",
        [*SMALL, f"trainer.output_dir={output}", f"trainer.strategy={args.strategy}", *args.overrides],
    )
    trainer = build_trainer(recipe)
    trainer.add_callback(KillAt(args.kill_step, args.kill_after_save))
    output.mkdir(parents=True, exist_ok=True)
    rank = trainer.accelerator.process_index
    (output / f"shards_{rank}.json").write_text(json.dumps(shard_report(trainer.model)))
    trainer.train()
    trainer.save(output / "model")
    with tempfile.TemporaryDirectory() as own:  # as push_to_hub saves: each process names its own folder
        saved = trainer.save(Path(own) / "push")
        if trainer.is_main_process:
            names = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
            (output / "push_files.json").write_text(json.dumps(names))
    trainer.accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(sys.argv[1:])
    finish_distributed_job()
