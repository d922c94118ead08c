"""strategy="fsdp": torch's FSDP2 on 2 CPU processes (gloo) shards the model, checkpoints in DCP shards,
resumes bitwise, agrees with DDP, and leaves a model that loads in one process.

The 2-process tests run the packaged text_generation recipe, shrunk (tests/jobs/fsdp.py), under
torchrun; each launch takes ~8 s, so they are marked slow. The single-process tests run in-process.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import RegressionData, job_command, job_env, make_trainer, parameters
from safetensors.torch import load_file

from tamrin import TrainerConfig
from tamrin.cli import main as tamrin_main
from tamrin.configs import ConfigError
from tamrin.models import Model
from tamrin.recipes import load_recipe
from tamrin.recipes.building import build_trainer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(processes: int, output_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run jobs/fsdp.py in `processes` CPU processes (torchrun; one plain process for 1); it must end
    with 0, or with the SIGKILL it was asked for (anything else fails the test)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]  # fmt: skip
    command = [*(launcher if processes > 1 else [sys.executable]), *job_command("fsdp", str(output_dir), *args)]
    result = subprocess.run(command, env=job_env(), capture_output=True, text=True, timeout=300, check=False)
    killed = result.returncode != 0 and (
        "Signals.SIGKILL" in result.stderr or "exitcode  : -9" in result.stderr or result.returncode == -signal.SIGKILL
    )
    if result.returncode != 0 and not ("--kill-step" in args and killed):
        raise AssertionError(f"launch failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(directory / "model.safetensors")


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    """One uninterrupted 2-process FSDP run of the shrunk text_generation recipe (shared by the tests)."""
    output = tmp_path_factory.mktemp("fsdp") / "reference"
    launch(2, output)
    return output


# -- 2 processes ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_fsdp_shards_every_parameter_across_the_two_processes(fsdp_run):
    reports = [json.loads((fsdp_run / f"shards_{rank}.json").read_text()) for rank in (0, 1)]
    assert reports[0].keys() == reports[1].keys() and len(reports[0]) > 10
    for name, first in reports[0].items():
        second = reports[1][name]
        assert first["type"] == second["type"] == "DTensor", f"{name} is not sharded"
        assert first["placements"] == second["placements"] == ["S(0)"], name
        rows = first["shape"][0]
        assert first["local_shape"][0] + second["local_shape"][0] == rows, name  # each holds its part, no more
        assert first["local_shape"][0] < rows, name
    total = sum(torch.Size(r["shape"]).numel() for r in reports[0].values())
    held = sum(torch.Size(r["local_shape"]).numel() for r in reports[0].values())
    assert held <= total / 2 + 64  # rank 0 holds half of the parameters (uneven rows round up)


@pytest.mark.slow
def test_fsdp_checkpoints_are_sharded_and_the_final_model_loads_in_one_process(fsdp_run):
    checkpoint = fsdp_run / "checkpoints" / "00000003"  # inside an accumulation window: gradients too
    shards = checkpoint / "train" / "sharded"
    assert sorted(p.name for p in shards.iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not (checkpoint / "model.safetensors").exists() and not (checkpoint / "train" / "optimizer.pt").exists()
    manifest = (checkpoint / "manifest.yaml").read_text()
    assert "train/sharded/__1_0.distcp" in manifest  # the other process's shard is in the atomic checkpoint
    pushed = json.loads((fsdp_run / "push_files.json").read_text())  # processes saving into their own folders
    assert {"model.safetensors", "train/sharded/__0_0.distcp", "train/sharded/__1_0.distcp"} <= set(pushed)
    model = Model.load(fsdp_run / "model")  # consolidated: one model.safetensors, one plain process
    assert not any(hasattr(p, "placements") for p in model.parameters())
    predictions = model.predict(["rev abc:", "sort cba:"])
    assert len(predictions) == 2 and all(isinstance(text, str) for text in predictions)


@pytest.mark.slow
def test_fsdp_run_killed_and_resumed_is_bitwise_equal(fsdp_run, tmp_path):
    resumed = tmp_path / "resumed"
    launch(2, resumed, "--kill-step", "5")  # the last checkpoint (step 3) is inside an accumulation window
    assert (resumed / "checkpoints" / "00000003").is_dir() and not (resumed / "model").exists()
    launch(2, resumed)
    expected, actual = weights(fsdp_run / "model"), weights(resumed / "model")
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), f"parameter {name} differs"
    pd.testing.assert_frame_equal(
        pd.read_csv(fsdp_run / "logs" / "training_logs.csv"), pd.read_csv(resumed / "logs" / "training_logs.csv")
    )


@pytest.mark.slow
def test_fsdp_and_ddp_of_the_same_run_end_within_1e_5(fsdp_run, tmp_path):
    launch(2, tmp_path / "ddp", "--strategy", "ddp")
    fsdp, ddp = weights(fsdp_run / "model"), weights(tmp_path / "ddp" / "model")
    assert fsdp.keys() == ddp.keys()
    difference = max((fsdp[name] - ddp[name]).abs().max().item() for name in fsdp)
    assert 0 < difference < 1e-5  # not bitwise (reduce-scatter sums in another order), but the same run
    fsdp_logs = pd.read_csv(fsdp_run / "logs" / "training_logs.csv")
    ddp_logs = pd.read_csv(tmp_path / "ddp" / "logs" / "training_logs.csv")
    assert fsdp_logs["evaluation.loss"].notna().sum() == 2  # exact, gathered evaluation under both
    pd.testing.assert_frame_equal(fsdp_logs, ddp_logs, check_exact=False, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fsdp_bf16_computes_in_bf16_and_keeps_fp32_weights(fsdp_run, tmp_path):
    launch(2, tmp_path / "bf16", "trainer.mixed_precision=bf16")  # FSDP2's MixedPrecisionPolicy
    assert {tensor.dtype for tensor in weights(tmp_path / "bf16" / "model").values()} == {torch.float32}
    fp32 = pd.read_csv(fsdp_run / "logs" / "training_logs.csv")["train.loss"]
    bf16 = pd.read_csv(tmp_path / "bf16" / "logs" / "training_logs.csv")["train.loss"]
    assert not bf16.equals(fp32)  # computed in bf16: not the fp32 run
    assert ((bf16 - fp32).abs() / fp32).max() < 0.01  # but the same run, to bf16's precision


@pytest.mark.slow
def test_export_writes_the_full_model_of_a_sharded_checkpoint(fsdp_run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert tamrin_main(["export", str(fsdp_run / "checkpoints" / "00000016"), str(out)]) == 0
    exported, final = weights(out), weights(fsdp_run / "model")  # the last checkpoint is the final state
    assert exported.keys() == final.keys()
    for name in final:
        assert torch.equal(exported[name], final[name]), name
    assert Model.load(out).predict(["rev abc:"]) == Model.load(fsdp_run / "model").predict(["rev abc:"])


@pytest.mark.slow
def test_two_process_checkpoint_loads_exactly_in_one_process_and_continues(fsdp_run, tmp_path):
    """2 -> 1: DCP reshards the 2-process shards into one unsharded model, bitwise equal at load."""
    recipe = load_recipe("text_generation", _small_recipe(tmp_path / "one", "trainer.strategy=fsdp"))
    with pytest.warns(UserWarning, match="strategy='fsdp' in a single process"):
        trainer = build_trainer(recipe)
    with pytest.warns(UserWarning, match="Resuming a 2-process checkpoint with 1 process"):  # and output_dir
        trainer.load_checkpoint(fsdp_run / "model")  # trainer.save wrote shards and the gathered weights
    final = weights(fsdp_run / "model")
    state = trainer.unwrapped_model.state_dict()
    for name in final:
        assert torch.equal(state[name], final[name]), name
    assert trainer.state.global_step == 16
    optimizer = trainer.optimizer.optimizer  # the torch AdamW inside accelerate's wrapper
    assert {int(s["step"]) for s in optimizer.state.values()} == {trainer.state.optimizer_steps} == {8}
    before = parameters(trainer.model)
    for group in optimizer.param_groups:
        group["lr"] = 1e-3  # the cosine schedule ended at 0
    trainer.training_step(next(iter(trainer.train_dataloader)))
    trainer.optimization_step()  # the restored AdamW state steps the unsharded model
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


@pytest.mark.slow
def test_one_process_checkpoint_resumes_with_two_processes(tmp_path):
    run = tmp_path / "run"
    launch(1, run, "--kill-step", "7")  # one process, strategy="fsdp": unsharded, DCP checkpoints
    result = launch(2, run)  # 1 -> 2 processes: resharded, continued to the end
    assert "Resuming a 1-process checkpoint with 2 process(es)" in result.stderr
    logs = pd.read_csv(run / "logs" / "training_logs.csv")
    assert logs["step"].is_monotonic_increasing and logs["train.loss"].notna().all()
    assert Model.load(run / "model").predict(["rev abc:"])


def _small_recipe(output: Path, *extra: str) -> list[str]:
    from jobs.fsdp import SMALL

    return [*SMALL, f"trainer.output_dir={output}", *extra]


# -- one process ----------------------------------------------------------------------------------
def test_transformers_models_shard_their_no_split_modules():
    from transformers import GPT2Config, GPT2LMHeadModel

    from tamrin.trainer.sharding import shard_module_classes

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64, n_positions=16,
                                       bos_token_id=0, eos_token_id=0))  # fmt: skip
    assert shard_module_classes(model, None) == {"GPT2Block"}
    assert shard_module_classes(model, ["GPT2Attention"]) == {"GPT2Attention"}


def test_unknown_strategy_is_refused_with_the_choices():
    with pytest.raises(
        ConfigError, match=r"`strategy='fdsp'` is not a valid choice. Valid choices: 'auto', 'ddp', 'fsdp'"
    ):
        TrainerConfig(strategy="fdsp")


def test_fsdp_refuses_fp16_and_says_what_works():
    with pytest.raises(ConfigError, match=r"`mixed_precision='fp16'` is not supported with strategy='fsdp'.*'bf16'"):
        TrainerConfig(strategy="fsdp", mixed_precision="fp16")


def test_single_process_fsdp_says_it_does_not_shard_and_resumes_bitwise_from_its_shards(tmp_path):
    """One process: a warning, no sharding, but DCP checkpoints (with the accumulation window's gradients)."""
    settings = {"strategy": "fsdp", "optimizer": "adamw", "gradient_accumulation_steps": 2, "save_steps": 3,
                "num_epochs": 2, "dataloader_shuffle": True}  # fmt: skip
    with pytest.warns(UserWarning, match="strategy='fsdp' in a single process: there is nothing to shard"):
        straight = make_trainer(tmp_path / "straight", **settings)
    straight.train()
    checkpoint = tmp_path / "straight" / "checkpoints" / "00000003"  # mid-window: gradients in the shards
    assert (checkpoint / "train" / "sharded" / ".metadata").is_file()
    assert not (checkpoint / "train" / "gradients.pt").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = make_trainer(tmp_path / "resumed", resume_from_checkpoint=str(checkpoint), **settings)
        resumed.train()
    for name, value in parameters(straight.model).items():
        assert torch.equal(value, dict(resumed.model.named_parameters())[name]), name


def test_load_best_model_at_end_reads_the_best_checkpoints_shards(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the single-process FSDP warning
        trainer = make_trainer(tmp_path / "run", evaluation=RegressionData(12, seed=1), strategy="fsdp",
                               save_steps=1, eval_steps=1, num_epochs=3, learning_rate=0.5,
                               load_best_model_at_end=True)  # fmt: skip
        trainer.train()
    best = trainer.state.best_checkpoint
    assert best is not None and trainer.state.best_step < trainer.state.global_step  # lr 0.5: it gets worse
    assert tamrin_main(["export", best, str(tmp_path / "best")]) == 0  # a plain nn.Module: via dcp_to_torch_save
    exported = weights(tmp_path / "best")
    assert exported.keys() == dict(trainer.model.named_parameters()).keys()
    for name, value in trainer.model.named_parameters():
        assert torch.equal(value, exported[name]), name


@pytest.mark.parametrize("engine", ["DEEPSPEED", "MEGATRON_LM", "FSDP"])
def test_accelerates_own_sharded_engines_are_refused_pointing_at_strategy_fsdp(engine):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from tamrin.trainer.runtime import check_supported_engine

    with pytest.raises(ConfigError, match=r"which tamrin does not run. For sharded training set `strategy='fsdp'`"):
        check_supported_engine(SimpleNamespace(distributed_type=DistributedType[engine]))


def test_a_sharded_checkpoint_resumed_without_fsdp_says_how(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the single-process FSDP warning
        make_trainer(tmp_path / "run", strategy="fsdp", save_steps=5).train()
    trainer = make_trainer(tmp_path / "ddp", resume_from_checkpoint=str(tmp_path / "run" / "checkpoints" / "00000005"))
    with pytest.raises(FileNotFoundError, match=r"written with strategy='fsdp'.*tamrin export"):
        trainer.train()


def test_export_of_a_checkpoint_without_shards_says_why(tmp_path, capsys):
    trainer = make_trainer(tmp_path, save_steps=5)
    trainer.train()
    assert tamrin_main(["export", str(tmp_path / "checkpoints" / "00000005"), str(tmp_path / "out")]) == 2
    assert "holds no sharded state" in capsys.readouterr().err
