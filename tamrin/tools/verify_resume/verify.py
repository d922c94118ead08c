"""Check that a recipe resumes exactly before trusting it with a long run (`tamrin verify-resume`).

Three fresh processes train the same recipe (the user's model, data, callbacks and settings) for
K steps, each in a folder of its own:

    straight      steps 1..K in one go
    interrupted   steps 1..S, a checkpoint at step S, and the process ends
    resumed       a new process resumes from a copy of that checkpoint and trains steps S+1..K

The interrupted run starts from the straight run's initial weights, so that only the resume is
tested; whether a fresh process builds the same initial weights is reported as a note. After every
step each process records the loss (the exact float) and a sha256 of every weight and buffer, every
optimizer-state value and the random generators' states; the resumed process also records what it
restored. The runs match when every step agrees and the final model.safetensors, optimizer.pt and
lr_scheduler.pt are bitwise equal; otherwise the report names the first step and tensor where they
part. Each process is `python -m tamrin.tools.verify_resume.job SPEC.json` (tamrin/tools/verify_resume/job.py).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tamrin.tools.verify_resume.job import FINAL, TRACE, fingerprint, flatten, import_all, name_optimizer_state

__all__ = ["DEFAULT_STEPS", "Divergence", "VerifyResult", "VerifyResumeError", "verify_resume", "compare_runs"]

DEFAULT_STEPS = 8
_PHASES = {  # phase: (where, what it suggests)
    "before the save": (
        "before the checkpoint, so the runs differ without any resume",
        "Training itself is not deterministic (non-deterministic GPU kernels, data that depends on timing or on "
        "randomness outside the seeded generators), so no resume can match it; fix that first "
        "(e.g. torch.use_deterministic_algorithms(True), or run on CPU).",
    ),
    "after the reload": (
        "in the state restored from the checkpoint",
        "The checkpoint did not restore this exactly: state that is not saved, saved in lower precision, or "
        "rebuilt differently on load.",
    ),
    "after the resume": (
        "after the resume",
        "The restored state was exact, so the resumed steps did something else: another batch (a sampler or "
        "dataset that does not resume its position), other random draws (randomness outside the restored "
        "generators, e.g. in a dataset or callback), or a callback or scheduler whose state is not saved.",
    ),
    "at the end": (
        "in the final saved state (every step matched)",
        "Something at the end of training (load_best_model_at_end, a callback's on_train_end) acted "
        "differently in the resumed run.",
    ),
}


class VerifyResumeError(RuntimeError):
    """A verification run could not be made (the recipe fails to train, or is too short)."""


@dataclasses.dataclass(frozen=True)
class Divergence:
    """Where the interrupted + resumed run first parts from the straight one.

    Attributes:
        step: the global step after which the values were recorded (the step restored, after the reload).
        what: "loss", "weight", "optimizer state", "random state", "step" (a run lacks it) or "file".
        name: the tensor or value, e.g. "rnn.weight_ih_l0", "state[head.bias].exp_avg", "torch".
        expected: the straight run's value (a float, or a sha256 prefix with dtype and shape).
        actual: the other run's value.
        phase: "before the save", "after the reload", "after the resume" or "at the end".
    """

    step: int
    what: str
    name: str
    expected: str
    actual: str
    phase: str


@dataclasses.dataclass
class VerifyResult:
    """The outcome of `verify_resume`; `report()` is what `tamrin verify-resume` prints."""

    recipe: str
    steps: int
    resume_step: int
    num_weights: int
    num_optimizer_values: int
    divergence: Divergence | None
    workdir: Path
    init_differs: str | None = None  # the first weight a fresh process builds differently, if any

    @property
    def match(self) -> bool:
        return self.divergence is None

    def report(self) -> str:
        lines = [
            f"verify-resume: recipe {self.recipe!r}: {self.steps} steps straight through, and {self.resume_step} "
            f"steps + a checkpoint + a reload in a fresh process + {self.steps - self.resume_step} resumed steps."
        ]
        d = self.divergence
        if d is None:
            lines += [
                f"  loss trace       identical at all {self.steps} steps",
                f"  weights          identical after every step and at the end ({self.num_weights} tensors)",
                f"  optimizer state  identical after every step and at the end ({self.num_optimizer_values} values)",
                "Resume is exact: the interrupted and resumed run is bitwise equal to the uninterrupted one.",
            ]
        else:
            where, hint = _PHASES[d.phase]
            lines += [
                f"  MISMATCH at step {d.step}, {where}: {d.what} {d.name!r} differs",
                f"    straight run: {d.expected}",
                f"    other run:    {d.actual}",
                f"  {hint}",
                f"Resume is NOT exact. The runs are kept in {self.workdir} (each with its {TRACE} and output.log).",
            ]
        if self.init_differs:
            lines.append(
                f"Note: two fresh processes built different initial weights (first {self.init_differs!r}): the model "
                "is initialised before the seed is set, so two runs of this recipe do not reproduce each other. "
                "Both runs above started from the same initial weights, to test the resume alone."
            )
        return "\n".join(lines)


# -- the verification (parent process) --------------------------------------------------------
def verify_resume(
    recipe: str | None = None,
    overrides: Sequence[str] = (),
    *,
    steps: int = DEFAULT_STEPS,
    resume_step: int | None = None,
    imports: Sequence[str] = (),
    workdir: str | Path | None = None,
    keep: bool = False,
    timeout: float | None = None,
) -> VerifyResult:
    """Train a recipe straight through, and interrupted + resumed in fresh processes; compare exactly.

    Args:
        recipe: a recipe YAML file or packaged recipe name (None: the default recipe).
        overrides: `section.key=value` overrides, as for `tamrin train` (e.g. a smaller dataset).
        steps: steps of each run (fewer if the recipe's run is shorter).
        resume_step: the step to checkpoint and resume at (default: half of the steps trained).
        imports: modules to import first in every process (those that register your models or datasets).
        workdir: where the runs go (default: a temporary folder, removed when the runs match).
        keep: keep the runs even when they match.
        timeout: seconds allowed for each run (None: no limit).

    Raises:
        ConfigError: the recipe or an override is invalid.
        VerifyResumeError: a run failed, or the recipe trains fewer than 2 steps.
    """
    from tamrin.recipes import load_recipe

    if steps < 2:
        raise VerifyResumeError(f"`steps={steps}` must be >= 2: a run needs a step before and after the resume.")
    import_all(imports)
    load_recipe(recipe, overrides)  # a bad recipe fails here, once, with its own message
    temporary = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="tamrin-verify-resume-") if workdir is None else workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = {"recipe": recipe, "overrides": list(overrides), "imports": list(imports), "steps": steps}
    _run_job(workdir, "straight", {**spec, "stop_at": None, "final": True, "initial": "save"}, timeout)
    straight = _read_trace(workdir / "straight" / TRACE)
    done = straight["steps"][-1]["step"] if straight["steps"] else 0
    resume_step = done // 2 if resume_step is None else resume_step
    if not 1 <= resume_step < done:
        raise VerifyResumeError(
            f"The recipe trained {done} step(s) and the resume step is {resume_step}: it must lie in [1, {done - 1}]. "
            "Train more steps (--steps, or a larger dataset / more epochs) or pick another --resume-at."
        )
    _run_job(workdir, "interrupted", {**spec, "stop_at": resume_step, "final": False, "initial": "load"}, timeout)
    _run_job(workdir, "resumed", {**spec, "stop_at": None, "final": True, "resume_from": "interrupted"}, timeout)
    built = _read_trace(workdir / "interrupted" / TRACE)["built"]
    last = straight["steps"][-1]
    result = VerifyResult(
        recipe=str(recipe or "default"),
        steps=done,
        resume_step=resume_step,
        num_weights=len(last["weights"]),
        num_optimizer_values=len(last["optimizer"]),
        divergence=compare_runs(workdir, resume_step),
        workdir=workdir,
        init_differs=next((n for n, v in straight["built"].items() if built.get(n) != v), None),
    )
    if result.match and temporary and not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _run_job(workdir: Path, name: str, spec: dict[str, Any], timeout: float | None) -> None:
    """Run one training process in `workdir/name`."""
    run_dir = workdir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    source = spec.pop("resume_from", None)
    if source is not None:  # a folder of its own, with a copy of the run to resume (checkpoints and logs)
        shutil.copytree(workdir / source / "output", run_dir / "output")
    spec_path = run_dir / "spec.json"
    spec_path.write_text(json.dumps({**spec, "run_dir": str(run_dir)}), encoding="utf-8")
    command = [sys.executable, "-m", "tamrin.tools.verify_resume.job", str(spec_path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise VerifyResumeError(f"The {name} run took longer than {timeout}s (its files: {run_dir}).") from err
    (run_dir / "output.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise VerifyResumeError(
            f"The {name} run failed (exit code {result.returncode}; its files and output.log: {run_dir}). "
            f"Its output ends:\n{tail}"
        )


def _read_trace(path: Path) -> dict[str, Any]:
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    events = {r["event"]: r for r in records if "event" in r}
    return {
        "built": events.get("built", {}).get("weights", {}),
        "parameter_names": events.get("start", {}).get("parameter_names", []),
        "loaded": events.get("loaded"),
        "steps": [r for r in records if "event" not in r],
    }


# -- comparing ----------------------------------------------------------------------------------
def compare_runs(workdir: Path, resume_step: int) -> Divergence | None:
    """The first difference between the straight run and the interrupted + resumed one, or None."""
    straight = _read_trace(workdir / "straight" / TRACE)
    resumed = _read_trace(workdir / "resumed" / TRACE)
    expected = {record["step"]: record for record in straight["steps"]}
    actual = {r["step"]: r for r in _read_trace(workdir / "interrupted" / TRACE)["steps"] if r["step"] <= resume_step}
    actual.update({r["step"]: r for r in resumed["steps"] if r["step"] > resume_step})
    for step in sorted(expected):
        phase = "before the save" if step <= resume_step else "after the resume"
        if step == resume_step + 1 and resumed["loaded"] is not None:
            divergence = _compare_records(expected[resume_step], resumed["loaded"], "after the reload")
            if divergence is not None:
                return divergence
        if step not in actual:
            return Divergence(step, "step", "global_step", "trained", "never trained", phase)
        divergence = _compare_records(expected[step], actual[step], phase)
        if divergence is not None:
            return divergence
    extra = sorted(set(actual) - set(expected))
    if extra:
        return Divergence(extra[0], "step", "global_step", "never trained", "trained", "after the resume")
    return _compare_final(workdir, straight["parameter_names"], max(expected, default=0))


def _compare_records(expected: dict, actual: dict, phase: str) -> Divergence | None:
    after_step = phase != "after the reload"
    step = expected["step"] if after_step else actual["step"]
    if after_step and expected["loss"] != actual["loss"]:
        return Divergence(step, "loss", "loss", _readable(expected["loss"]), _readable(actual["loss"]), phase)
    # random states are compared after steps only: an evaluation between a step and its save may draw from them
    kinds = [("weights", "weight"), ("optimizer", "optimizer state")] + [("rng", "random state")] * after_step
    for key, what in kinds:
        for name in list(expected[key]) + [n for n in actual[key] if n not in expected[key]]:
            left, right = expected[key].get(name, "missing"), actual[key].get(name, "missing")
            if left != right:
                return Divergence(step, what, name, _readable(left), _readable(right), phase)
    return None


def _readable(value: str) -> str:
    """A recorded float (float.hex) as `0.001 (0x1.0624dd2f1a9fcp-10)`; anything else as it is."""
    try:
        return f"{float.fromhex(value)!r} ({value})" if "0x" in value else value
    except ValueError:
        return value


def _compare_final(workdir: Path, parameter_names: list[str], step: int) -> Divergence | None:
    """Compare the final saved files of the straight and resumed runs, value by value, bitwise."""
    from safetensors.torch import load_file

    from tamrin.trainer.checkpoint.state_files import STATE_FILES
    from tamrin.trainer.checkpoint.store import load_torch

    files = [
        (entry.name, "weight" if entry.name.endswith(".safetensors") else "optimizer state")
        for entry in STATE_FILES
        if entry.compared
    ]
    for filename, what in files:
        left_path, right_path = (workdir / run / FINAL / filename for run in ("straight", "resumed"))
        if left_path.is_file() != right_path.is_file():
            shown = {True: "saved", False: "absent"}
            return Divergence(
                step, "file", filename, shown[left_path.is_file()], shown[right_path.is_file()], "at the end"
            )
        if not left_path.is_file():
            continue
        load = load_file if filename.endswith(".safetensors") else load_torch
        left, right = (dict(flatten(name_optimizer_state(load(p), parameter_names))) for p in (left_path, right_path))
        for name in list(left) + [n for n in right if n not in left]:
            a, b = fingerprint(left.get(name)), fingerprint(right.get(name))
            if a != b:
                return Divergence(step, what, f"{filename}: {name}", _readable(a), _readable(b), "at the end")
    return None
