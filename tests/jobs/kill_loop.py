"""A loop of kills in one process: SIGKILL, SIGTERM and SIGINT at random (seeded) moments, each run resumed.

    PYTHONPATH=tests python -m jobs.kill_loop REFERENCE_DIR RUN_DIR --kills N --seed S --report FILE

The run is jobs/crash.py's (dropout, shuffle, accumulation 3, warmup, a checkpoint every 4 steps,
save_total_limit=2) plus an evaluation every 5 steps, for 12 epochs (120 steps). This process imports
torch and tamrin once and forks one child per run, so 30 kills cost 30 short runs, not 30 interpreter
starts. REFERENCE_DIR gets the uninterrupted run; RUN_DIR is killed N times and then run to its end.

Each kill, once the run reaches a seeded target step (the targets climb through the run):

- wall: this process sends the signal a random time (up to 1.5 save intervals) after that step;
- rotation / evaluation: the child sends it to itself while rotation deletes an old checkpoint, or in
  the middle of an evaluation (at its k-th sample).

A SIGKILL ends the child at once; SIGTERM and SIGINT stop it at the next step boundary with a checkpoint
(exit 143 / 130). A child that has not died by its 3rd save since the target step (4th with a rotation
kill) is SIGKILLed then, so no run reaches the end. FILE gets one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from jobs.builder import job_config, job_data, job_model
from jobs.crash import Arming, EventLog, EventTrainer, KillableStore, KillSwitch
from tamrin.trainer.interruption import RunInterrupted

EPOCHS, STEPS, SAVE_STEPS, EVAL_STEPS, EVAL_SIZE = 12, 120, 4, 5, 8
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
TIMEOUT = 120.0


class LoggedSwitch(KillSwitch):
    """The kill switch, writing "signal-at POINT" to the event log when it fires."""

    def __init__(self, spec: tuple[str, int] | None, events: EventLog) -> None:
        super().__init__(spec)
        self.events = events

    def reached(self, point: str) -> bool:
        hit = super().reached(point)
        if hit:
            self.events.write(f"signal-at {point}")
        return hit


class EvalData(Dataset):
    """The evaluation data; reading a sample is a point the switch can fire at ("evaluation")."""

    def __init__(self, switch: KillSwitch) -> None:
        self.data, self.switch = job_data(EVAL_SIZE, seed=1), switch

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.switch.reached("evaluation"):
            self.switch.die()
        return self.data[index]


def run(output_dir: str, events_path: str, arm_at: int, max_saves: int | None, point: str | None, count: int,
        signum: int) -> int:  # fmt: skip
    """One run (in a forked child): resume, train, save the final state; returns the exit status."""
    KillSwitch.armed, KillSwitch.signum = False, signum
    events = EventLog(events_path)
    switch = LoggedSwitch((point, count) if point else None, events)
    config = job_config(output_dir, num_epochs=EPOCHS, save_total_limit=2, eval_steps=EVAL_STEPS)
    trainer = EventTrainer(
        model=job_model(),
        config=config,
        train_dataset=job_data(37, seed=0),
        eval_dataset=EvalData(switch),
        callbacks=[Arming(arm_at, events)],
        events=events,
        max_saves=max_saves,
    )
    trainer.checkpointer.store = KillableStore(switch, 0.0)
    events.write("train-begin")
    try:
        trainer.train()
    except RunInterrupted as stop:
        return stop.exit_code
    trainer.save(Path(output_dir) / "final")
    events.write("done")
    return 0


def fork(*args: Any) -> int:
    """Start `run(*args)` in a child process; returns its pid."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = run(*args)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def wait(pid: int) -> int:
    """The child's exit status: its code, or -SIGNAL when a signal ended it."""
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def ended(pid: int) -> bool:
    """Whether the child has ended (it is not reaped: `wait` still reads its status)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def wait_for_line(pid: int, events: Path, event: str) -> bool:
    """Block until the child writes `event`; False when it ended first."""
    deadline = time.monotonic() + TIMEOUT
    while not (events.is_file() and f"\n{event}" in "\n" + events.read_text()):
        if ended(pid) or time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def plan(rng: random.Random, kills: int) -> list[dict[str, Any]]:
    """Seeded kills: the signals in equal shares, a fifth at rotation, a fifth in an evaluation."""
    kinds = ["rotation", "evaluation"] * (kills // 5) + ["wall"] * (kills - 2 * (kills // 5))
    signals = [SIGNALS[i % len(SIGNALS)] for i in range(kills)]
    rng.shuffle(kinds)
    rng.shuffle(signals)
    planned = []
    for i, (kind, signum) in enumerate(zip(kinds, signals, strict=True)):
        count = rng.randint(1, EVAL_SIZE) if kind == "evaluation" else 1
        planned.append({"kind": kind, "signal": signal.Signals(signum).name, "signum": int(signum), "count": count,
                        "arm_at": 3 * i + rng.randint(0, 2), "fraction": rng.uniform(0.05, 1.5)})  # fmt: skip
    return planned


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference_dir")
    parser.add_argument("run_dir")
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", required=True)
    args = parser.parse_args(argv)
    work = Path(args.report).parent
    report = EventLog(args.report)

    events = work / "events-reference"
    pid = fork(args.reference_dir, str(events), 0, None, None, 0, signal.SIGKILL)
    wait_for_line(pid, events, "train-begin")
    began = time.monotonic()
    report.write(json.dumps({"run": "reference", "code": wait(pid), "seconds": time.monotonic() - began}))
    save_interval_s = (time.monotonic() - began) * SAVE_STEPS / STEPS

    for number, kill in enumerate(plan(random.Random(args.seed), args.kills), start=1):
        events = work / f"events-{number:02d}"
        point = None if kill["kind"] == "wall" else kill["kind"]
        max_saves = 3 if kill["kind"] == "rotation" else 2
        pid = fork(args.run_dir, str(events), kill["arm_at"], max_saves, point, kill["count"], kill["signum"])
        if point is None and wait_for_line(pid, events, "armed"):
            time.sleep(kill["fraction"] * save_interval_s)
            if not ended(pid):
                os.kill(pid, kill["signum"])
        code = wait(pid)
        lines = events.read_text().splitlines() if events.is_file() else []
        report.write(json.dumps({"run": number, **kill, "code": code, "events": lines}))

    events = work / "events-final"
    report.write(json.dumps({"run": "final", "code": wait(fork(args.run_dir, str(events), 0, None, None, 0, 0))}))


if __name__ == "__main__":
    main(sys.argv[1:])
