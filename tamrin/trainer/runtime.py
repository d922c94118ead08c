"""The run's engine: an accelerate `Accelerator` built from the config, seeding, and versions.

Device placement, mixed precision and multi-process training are accelerate's; tamrin adds none of
its own. Gradient accumulation windows are counted by the Trainer (from `epoch_step`, so they
resume exactly); the accelerator only scales the loss and skips DDP's gradient sync inside a window.
"""

from __future__ import annotations

import hashlib
import random

import accelerate
import numpy as np
import torch
from accelerate import Accelerator

from tamrin.configs import ConfigError
from tamrin.trainer.config import TrainerConfig
from tamrin.version import __version__

__all__ = [
    "build_accelerator",
    "check_accelerator_accumulation",
    "check_mixed_precision",
    "check_supported_engine",
    "config_hash",
    "run_info",
    "seed_everything",
]


def build_accelerator(config: TrainerConfig) -> Accelerator:
    """An Accelerator for `config`: device / use_cpu and mixed_precision (accumulation is the loop's own)."""
    use_cpu = config.use_cpu or config.device == "cpu"
    if use_cpu or not torch.accelerator.is_available():  # before accelerate's process-wide state is set
        check_mixed_precision(config.mixed_precision, "cpu")
    accelerator = Accelerator(
        cpu=use_cpu,
        mixed_precision=config.mixed_precision or "no",
        # tamrin accumulates itself (its loop scales each loss by its window's real size)
        step_scheduler_with_optimizer=False,
    )
    if config.distributed and accelerator.num_processes == 1:
        raise ConfigError(
            "`distributed=True` but this is a single process. Launch with `torchrun --nproc_per_node N` or "
            "`accelerate launch`, or set distributed=false."
        )
    check_mixed_precision(config.mixed_precision, accelerator.device.type)
    requested = config.device.split(":")[0]
    if not use_cpu and requested not in ("auto", accelerator.device.type):
        raise ConfigError(
            f"`device={config.device!r}` is not available here (accelerate found {accelerator.device}). "
            "Use device='auto' or 'cpu', or set use_cpu=true."
        )
    return accelerator


def check_mixed_precision(mixed_precision: str | None, device_type: str) -> None:
    """Refuse a precision the device would silently not use (accelerate runs fp16 on CPU as fp32).

    Raises:
        ConfigError: naming the value and the choices valid on this device.
    """
    if device_type == "cpu" and mixed_precision in ("fp16", "fp8"):
        raise ConfigError(
            f"`mixed_precision={mixed_precision!r}` is not available on CPU (it would not train in {mixed_precision}). "
            f"Valid choices on CPU: 'no', 'bf16'; use a GPU for {mixed_precision}."
        )


def check_accelerator_accumulation(accelerator: Accelerator, config: TrainerConfig) -> None:
    """An Accelerator passed in must not accumulate differently from the config (each update would change size).

    Raises:
        ConfigError: naming both values.
    """
    steps = accelerator.gradient_accumulation_steps
    if steps not in (1, config.gradient_accumulation_steps):
        raise ConfigError(
            f"The Accelerator passed in has gradient_accumulation_steps={steps}, but the config has "
            f"`gradient_accumulation_steps={config.gradient_accumulation_steps}`. tamrin's loop accumulates as the "
            "config says: build the Accelerator without gradient_accumulation_steps (or with the same value)."
        )
    check_mixed_precision(accelerator.mixed_precision, accelerator.device.type)


def check_supported_engine(accelerator: Accelerator) -> None:
    """Refuse accelerate's own sharded engines: tamrin shards with torch's FSDP2 (strategy="fsdp").

    accelerate's FSDP, DeepSpeed and Megatron-LM keep model and optimizer state in their own formats,
    which tamrin's checkpoints do not read; and on CPU accelerate does not shard at all (with
    ACCELERATE_USE_FSDP it runs DDP). Say so before training instead of falling back silently.
    """
    import os

    from accelerate.utils import DistributedType

    sharded = {DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM}
    if accelerator.distributed_type in sharded:
        raise ConfigError(
            f"accelerate is configured for {accelerator.distributed_type.value}, which tamrin does not run. "
            "For sharded training set `strategy='fsdp'` in the TrainerConfig (torch's FSDP2, sharded DCP "
            "checkpoints) and launch plain DDP processes (`torchrun`, or `accelerate launch` without "
            "--use_fsdp / --use_deepspeed); see docs/distributed.md."
        )
    if (
        os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
        and accelerator.distributed_type not in sharded
    ):
        raise ConfigError(
            f"FSDP was requested (ACCELERATE_USE_FSDP) but accelerate runs {accelerator.distributed_type.value} here "
            "(on CPU, accelerate does not shard with FSDP). Unset ACCELERATE_USE_FSDP and set `strategy='fsdp'` "
            "in the TrainerConfig to shard with torch's FSDP2 (docs/distributed.md)."
        )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def config_hash(config: TrainerConfig) -> str:
    """A short hash of the config's YAML, recorded in each checkpoint's manifest."""
    return hashlib.sha256(config.to_yaml().encode()).hexdigest()[:16]


def run_info(config: TrainerConfig, world_size: int, global_step: int) -> dict[str, object]:
    """What a checkpoint manifest records besides its files."""
    return {
        "global_step": global_step,
        "tamrin_version": __version__,
        "torch_version": str(torch.__version__),
        "accelerate_version": accelerate.__version__,
        "world_size": world_size,
        "trainer_config_hash": config_hash(config),
    }
