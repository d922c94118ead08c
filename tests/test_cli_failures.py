"""Issue 15: every failure a user can cause is one message naming the input, exit 2, no traceback.

Each case goes through the real command line (`tamrin.cli.main`, or `python -m tamrin` in a
subprocess where the failure must be injected into a fresh process) with the smallest settings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tamrin.cli import main
from tamrin.recipes.loading import recipe_path
from tamrin.trainer.checkpoint.files import MANIFEST, read_manifest, verify_checkpoint
from tamrin.trainer.checkpoint.manifest import write_manifest
from tamrin.trainer.logs.logger import load_logs

PLATES = [
    "dataset.eval_num_samples=16",
    "trainer.progress=none",
    "trainer.batch_size=8",
    "model.rnn_hidden_size=16",
]


@pytest.fixture(scope="module")
def plates_checkpoint(tmp_path_factory) -> Path:
    """A default-recipe run of 5 steps over 64 plates, saved at step 5 (mid-epoch: sample 40)."""
    run = tmp_path_factory.mktemp("plates")
    assert main(["train", *PLATES, f"trainer.output_dir={run}", "dataset.num_samples=64", "trainer.max_steps=5"]) == 0
    return run / "checkpoints" / "00000005"


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_resuming_a_checkpoint_of_another_architecture_names_the_parameters_and_shapes(
    plates_checkpoint, tmp_path, capsys
):
    """Was a RuntimeError traceback of torch's "size mismatch" lines."""
    resume = [f"trainer.resume_from_checkpoint={plates_checkpoint}", f"trainer.output_dir={tmp_path}"]
    assert main(["train", *PLATES[:-1], "model.rnn_hidden_size=8", "dataset.num_samples=64", *resume]) == 2
    err = error_of(capsys)
    assert f"The weights in {plates_checkpoint / 'model.safetensors'} do not fit CRNN" in err
    assert "another architecture or vocabulary" in err
    assert "expected shape [32, " in err and "found [64, " in err  # an LSTM gate block: 4 * 8 vs 4 * 16


def test_resuming_from_an_empty_directory_says_it_is_empty(tmp_path, capsys):
    """Was a ValueError traceback ("manifest.yaml is missing")."""
    (tmp_path / "empty").mkdir()
    overrides = [f"trainer.resume_from_checkpoint={tmp_path / 'empty'}", f"trainer.output_dir={tmp_path / 'run'}"]
    assert main(["train", *PLATES, "dataset.num_samples=64", *overrides]) == 2
    assert f"Cannot resume from {tmp_path / 'empty'}: the directory is empty, not a checkpoint" in error_of(capsys)


def test_a_dataset_that_shrank_under_a_resumed_run_is_named_as_such(plates_checkpoint, tmp_path, capsys):
    """Was `start_index=40` must be an int in [0, 24] (a sampler detail) in a traceback."""
    resume = [f"trainer.resume_from_checkpoint={plates_checkpoint}", f"trainer.output_dir={tmp_path}"]
    assert main(["train", *PLATES, "dataset.num_samples=24", "trainer.max_steps=10", *resume]) == 2
    err = error_of(capsys)
    assert "The checkpoint stopped at sample 40 of epoch 0, but the training dataset now has 24 samples" in err
    assert "it shrank since the checkpoint was saved" in err


@pytest.mark.parametrize("output_dir", ["a_file", "a_file/run", "/dev/null"])
def test_an_output_dir_that_is_a_file_is_refused(output_dir, tmp_path, capsys):
    """Were FileExistsError / NotADirectoryError tracebacks from the first mkdir."""
    (tmp_path / "a_file").write_text("not a folder")
    path = output_dir if output_dir.startswith("/") else str(tmp_path / output_dir)
    assert main(["train", "--dry-run", f"trainer.output_dir={path}"]) == 2
    assert f"`output_dir={path!r}`" in error_of(capsys)


def run_cli_with(prelude: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`tamrin ARGV` in a fresh process after `prelude` (how a failure is injected there)."""
    script = f"import sys\n{textwrap.dedent(prelude)}\nfrom tamrin.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=False, env=env)


TEXT = ["text_classification", "trainer.progress=none", "dataset.num_samples=100", "trainer.num_epochs=2"]


def test_a_full_disk_while_tensorboard_writes_stops_with_one_message_and_keeps_the_csv_and_checkpoint(tmp_path):
    """Was an OSError traceback from TensorBoard's writer thread, then another from the main thread.

    The disk is made full inside TensorBoard's writer thread: its RecordWriter.write (which runs on
    that thread and writes the event file) raises ENOSPC from its 8th record on, as the file write
    would on a full disk.
    """
    full_after_eight_records = """
        import errno, os
        from tensorboard.summary.writer import record_writer
        write, calls = record_writer.RecordWriter.write, []
        def full(self, data):
            calls.append(1)
            if len(calls) > 8:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return write(self, data)
        record_writer.RecordWriter.write = full
    """
    overrides = [f"trainer.output_dir={tmp_path}", "trainer.log_steps=1", "trainer.save_steps=2"]
    result = run_cli_with(full_after_eight_records, "train", *TEXT, *overrides)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"Could not write the TensorBoard events in {tmp_path / 'logs'}: No space left on device" in result.stderr
    checkpoints = sorted((tmp_path / "checkpoints").iterdir())
    assert checkpoints and all(verify_checkpoint(path) is None for path in checkpoints)
    logs = load_logs(tmp_path)
    assert list(logs["step"]) == list(range(1, len(logs) + 1))  # each step once, none torn
    assert len(logs) >= int(checkpoints[-1].name)


def test_a_nonfinite_loss_reaching_the_cli_is_one_message(tmp_path):
    """Was a NonFiniteLossError traceback. The model's loss is made NaN from the 3rd step on."""
    nan_from_step_three = """
        from tamrin.models.text_classifier import TextClassifier
        compute, calls = TextClassifier.compute_loss, []
        def nan_loss(self, outputs, batch):
            calls.append(1)
            loss = compute(self, outputs, batch)
            return loss * float("nan") if len(calls) >= 3 else loss
        TextClassifier.compute_loss = nan_loss
    """
    result = run_cli_with(nan_from_step_three, "train", *TEXT, f"trainer.output_dir={tmp_path}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "tamrin train: error: " in result.stderr and "at step 3" in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trainer:\n  batch_size: [1\n", "is not valid YAML (tags such as !!python are refused): while parsing a flow"),
        (
            "trainer: !!python/object/apply:os.system [echo hi]\n",
            "is not valid YAML (tags such as !!python are refused): could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
        ),
    ],
)
def test_a_recipe_with_a_yaml_syntax_error_or_a_python_tag_is_one_message(text, message, tmp_path, capsys):
    """Were a yaml ParserError / ConstructorError traceback, exit 1."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert main(["train", str(recipe), "--dry-run"]) == 2
    err = error_of(capsys)
    assert f"Recipe {recipe} {message}" in err and len(err.strip().splitlines()) == 1


def test_an_unset_environment_variable_names_the_key_in_an_override_a_recipe_and_a_checkpoint(
    plates_checkpoint, tmp_path, capsys, monkeypatch
):
    """Were omegaconf's InterpolationResolutionError (a traceback from a checkpoint's config)."""
    monkeypatch.delenv("TAMRIN_UNSET", raising=False)
    unset = "${oc.env:TAMRIN_UNSET}"
    assert main(["train", "--dry-run", f"trainer.output_dir={unset}"]) == 2
    assert "`trainer.output_dir` reads the environment variable 'TAMRIN_UNSET', which is not set" in error_of(capsys)

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(recipe_path("default").read_text().replace("seed: 42", f"seed: {unset}"))
    assert f"seed: {unset}" in recipe.read_text()
    assert main(["train", str(recipe), "--dry-run"]) == 2
    assert f"Recipe {recipe}: `trainer.seed` reads the environment variable 'TAMRIN_UNSET'" in error_of(capsys)

    checkpoint = tmp_path / "run" / "checkpoints" / plates_checkpoint.name
    shutil.copytree(plates_checkpoint, checkpoint)
    config = checkpoint / "train" / "trainer_config.yaml"
    config.write_text(config.read_text().replace("seed: 42", f"seed: {unset}"))
    info = {key: value for key, value in read_manifest(checkpoint).items() if key != "files"}
    (checkpoint / MANIFEST).unlink()
    write_manifest(checkpoint, info)  # resealed: the edit is the checkpoint's own config, not damage
    resume = ["trainer.resume_from_checkpoint=true", f"trainer.output_dir={tmp_path / 'run'}"]
    assert main(["train", *PLATES, "dataset.num_samples=64", "trainer.max_steps=6", *resume]) == 2
    assert "`seed` reads the environment variable 'TAMRIN_UNSET', which is not set" in error_of(capsys)


def test_a_callback_entry_without_a_name_is_named_with_the_registered_callbacks(capsys):
    """Was "Unknown callback None"."""
    assert main(["train", "--dry-run", "callbacks=[{bogus: 1}]"]) == 2
    err = error_of(capsys)
    assert "Callback entry {'bogus': 1} in the recipe has no `name`" in err
    assert "Registered callbacks: curriculum, early_stopping" in err


@pytest.mark.parametrize("plot", ["out.txt", "out"])
def test_logs_plot_to_a_file_matplotlib_cannot_write_names_the_valid_extensions(plot, tmp_path, capsys):
    """Was matplotlib's ValueError traceback, after the summary had been printed."""
    pytest.importorskip("matplotlib")
    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    (logs / "training_logs.csv").write_text("step,epoch,train.loss\n1,0,0.5\n")
    assert main(["logs", str(tmp_path / "run"), "--plot", str(tmp_path / plot)]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""  # refused before anything was read
    assert f"`--plot {tmp_path / plot}`: cannot write a plot as" in captured.err
    assert "Valid extensions: " in captured.err and ".pdf" in captured.err and ".png" in captured.err
    assert not (tmp_path / plot).exists()


def test_a_typod_local_path_for_init_weights_from_says_it_asks_the_hub_and_that_no_local_folder_exists(
    tmp_path, capsys, monkeypatch
):
    """Was the Hub's "repository not found" alone, for what was meant as a local path."""
    from tamrin import hub

    def not_found(repo_id, **kwargs):
        raise hub.HubError(f"Repository {repo_id!r} was not found on the Hub (or is private: pass a token).")

    monkeypatch.setattr(hub, "download", not_found)  # no network in tests: the Hub's answer to a missing repo
    monkeypatch.chdir(tmp_path)
    overrides = [f"trainer.output_dir={tmp_path / 'run'}", "trainer.init_weights_from=ouput/model"]
    with pytest.warns(UserWarning, match=r"no local folder .*ouput/model; fetching it from the Hugging Face Hub"):
        assert main(["train", *PLATES, "dataset.num_samples=64", *overrides]) == 2
    err = error_of(capsys)
    assert f"the local folder {tmp_path / 'ouput' / 'model'} does not exist, and fetching it from the Hub" in err
    assert "Repository 'ouput/model' was not found on the Hub" in err


READ_ONLY_PRELUDE = """
    import builtins, errno, os
    OUT = os.environ["TAMRIN_TEST_READ_ONLY"]

    def _refuse(path):
        if str(os.path.abspath(os.fspath(path))).startswith(OUT):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    _open, _os_open, _mkdir = builtins.open, os.open, os.mkdir
    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
            _refuse(file)
        return _open(file, mode, *args, **kwargs)
    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            _refuse(path)
        return _os_open(path, flags, *args, **kwargs)
    def mkdir(path, *args, **kwargs):
        _refuse(path)
        return _mkdir(path, *args, **kwargs)
    builtins.open, os.open, os.mkdir = open_, os_open, mkdir
"""


@pytest.mark.parametrize("how", ["read-only mount", "no write permission"])
def test_a_read_only_output_dir_exits_2_naming_the_path(how, tmp_path):
    """Was a raw OSError traceback (EROFS from writing recipe.yaml, EACCES without permission).

    The tests run as root, where chmod does not stop a write, so the failure is made two ways: a
    real read-only tmpfs mounted on output_dir (EROFS; skipped where mounting is not allowed), and
    in a fresh process every open-for-writing, os.open and mkdir under output_dir raising EACCES,
    as they do for a user without write permission.
    """
    out = tmp_path / "out"
    out.mkdir()
    if how == "read-only mount":
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(out)], capture_output=True)
        if mounted.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root); the injected EACCES case covers this")
        prelude, reason = "", "Read-only file system"
    else:
        prelude, reason = READ_ONLY_PRELUDE, "Permission denied"
    try:
        env = {**os.environ, "TAMRIN_TEST_READ_ONLY": str(out)}
        result = run_cli_with(prelude, "train", *PLATES, "dataset.num_samples=64", f"trainer.output_dir={out}", env=env)
    finally:
        if how == "read-only mount":
            subprocess.run(["umount", str(out)], check=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"tamrin train: error: {out}" in result.stderr and f"{reason}. Check the output_dir" in result.stderr
    assert list(out.iterdir()) == []
