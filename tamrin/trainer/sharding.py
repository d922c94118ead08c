"""Sharded training: torch's FSDP2 (`fully_shard`) behind `TrainerConfig.strategy="fsdp"`.

accelerate keeps the device, the processes, the data loaders and the optimizer wrapper; it does
not shard on CPU (its FSDP needs CUDA, and `cpu=True` runs DDP), so the model is sharded here with
torch's own `fully_shard` on a device mesh of the run's device type, one code path for CPU (gloo)
and GPU (nccl). The sharded model is not given to accelerate's `prepare`, which would wrap it in
DDP; only the optimizer is (`Accelerator.prepare_optimizer`, its public call for that).

Checkpoints of a sharded run hold each process's shard of the model, optimizer (and, inside an
accumulation window, gradient) state, written by torch.distributed.checkpoint (DCP) into
`train/sharded/` of the same atomic checkpoint folder; DCP reshards on load, so a checkpoint
resumes with any number of processes. A consolidated `model.safetensors` is gathered to the main
process for `trainer.save(path)`, the final model and the Hub. tamrin writes no communication code.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from tamrin.configs import ConfigError
from tamrin.trainer.config import TrainerConfig

__all__ = [
    "SHARDED_DIR",
    "check_strategy",
    "gather_full_state",
    "gathered_for_generation",
    "inference_context",
    "is_sharded",
    "load_sharded",
    "save_sharded",
    "shard_model",
    "shard_module_classes",
    "writes_sharded_checkpoints",
]

SHARDED_DIR = "sharded"
"""The DCP folder inside a checkpoint's train/ folder: one `__{rank}_0.distcp` per process and `.metadata`."""


def writes_sharded_checkpoints(config: TrainerConfig) -> bool:
    """Whether this run's checkpoints keep model and optimizer state in DCP shards (strategy="fsdp")."""
    return config.strategy == "fsdp"


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model` was sharded with `fully_shard` (its parameters are DTensors)."""
    return isinstance(model, FSDPModule)


def check_strategy(config: TrainerConfig, num_processes: int, *, optimizer_given: bool) -> None:
    """Refuse what FSDP cannot do here, and say what a single-process "fsdp" run does instead.

    (fp16 and compile are refused by TrainerConfig's validation.)

    Raises:
        ConfigError: an optimizer passed in (it would hold the parameters from before sharding).
    """
    if config.strategy != "fsdp":
        return
    if optimizer_given and num_processes > 1:
        raise ConfigError(
            "An optimizer was passed to the Trainer with strategy='fsdp': it holds the model's parameters from "
            "before sharding, which FSDP replaces. Name it in the config (`optimizer`, `optimizer_kwargs`), "
            "register your own with OPTIMIZERS.add, or override `create_optimizer`."
        )
    if num_processes == 1:
        warnings.warn(
            "strategy='fsdp' in a single process: there is nothing to shard over, so the model trains unsharded "
            "in this process (as with strategy='auto'). Checkpoints are still written sharded (DCP), so they "
            "resume with any number of processes. Launch with `torchrun --nproc_per_node N` to shard.",
            stacklevel=3,
        )


def shard_module_classes(model: torch.nn.Module, names: list[str] | None) -> set[str]:
    """The class names of the modules to shard one by one (see `TrainerConfig.fsdp_shard_modules`).

    Default: transformers' `_no_split_modules` (its layer classes), else the class of the items of
    every `nn.ModuleList` whose items share one class (a Transformer's blocks).
    """
    if names is not None:
        return set(names)
    no_split = getattr(model, "_no_split_modules", None)
    if no_split:
        return set(no_split)
    found: set[str] = set()
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) > 1:
            classes = {type(item).__name__ for item in module}
            found |= classes if len(classes) == 1 else set()
    return found


def shard_model(
    model: torch.nn.Module, config: TrainerConfig, device: torch.device, world_size: int
) -> torch.nn.Module:
    """Shard `model` over all processes: `fully_shard` on each block (innermost first), then the root.

    Each block gathers its parameters just before it runs and frees them after (forward and backward),
    so a process holds 1/world_size of the parameters, gradients and optimizer state plus one block.

    Raises:
        ConfigError: `fsdp_shard_modules` names classes the model does not have.
    """
    model = model.to(device)
    mesh = init_device_mesh(device.type, (world_size,))
    bf16 = config.mixed_precision == "bf16"  # blocks compute in bf16; the model's outputs come back in fp32
    inner = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else None
    outer = MixedPrecisionPolicy(torch.bfloat16, torch.float32, output_dtype=torch.float32) if bf16 else None
    classes = shard_module_classes(model, config.fsdp_shard_modules)
    blocks = [module for module in model.modules() if type(module).__name__ in classes and module is not model]
    if config.fsdp_shard_modules is not None and not blocks:
        present = sorted({type(module).__name__ for module in model.modules()})
        raise ConfigError(
            f"`fsdp_shard_modules={config.fsdp_shard_modules!r}` names no module of {type(model).__name__}; "
            f"its module classes are: {present}."
        )
    for block in reversed(blocks):  # modules() lists parents first: shard the innermost first
        fully_shard(block, mesh=mesh, mp_policy=inner or MixedPrecisionPolicy())
    fully_shard(model, mesh=mesh, mp_policy=outer or MixedPrecisionPolicy())
    return model


def inference_context(model: torch.nn.Module) -> contextlib.AbstractContextManager:
    """`torch.inference_mode()`, or `no_grad()` for a sharded model.

    FSDP2 gathers parameters into buffers it reuses for training; gathered under inference mode they
    become inference tensors that a later training step may not write to.
    """
    return torch.no_grad() if is_sharded(model) else torch.inference_mode()


@contextlib.contextmanager
def gathered_for_generation(model: torch.nn.Module) -> Iterator[None]:
    """Hold every block's full parameters while `generate` runs, then shard them again.

    `generate` stops when its own rows are done, so two processes make different numbers of forward
    calls; a sharded forward is a collective call and would wait forever for the other process. With
    the parameters gathered once here (by every process alike), generation makes no collective call.
    Costs the full parameters' memory during generation (as HF's `synced_gpus` avoids at the cost of
    dummy forwards).
    """
    if not is_sharded(model):
        yield
        return
    modules = [module for module in model.modules() if isinstance(module, FSDPModule)]
    with torch.no_grad():
        for module in modules:
            module.set_reshard_after_forward(False)
            module.unshard()
    try:
        yield
    finally:
        for module in modules:
            module.reshard()
            module.set_reshard_after_forward(True)


def gather_full_state(model: torch.nn.Module) -> dict[str, Any]:
    """The full (unsharded) state dict on the CPU of the main process ({} elsewhere); call it on every process.

    Tied parameters appear once (torch's state-dict API drops the repeats).
    """
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _single_process() -> bool:
    """No process group (one plain process): DCP reads and writes without one, said explicitly."""
    return not (torch.distributed.is_available() and torch.distributed.is_initialized())


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    """DCP warns on every call in one process, even when told `no_dist`; one process is meant here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        yield


def _torch_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one


def save_sharded(model: torch.nn.Module, optimizer: Any, directory: Path) -> None:
    """Write this process's shard of the model, optimizer and gradient state with DCP (every process calls it).

    An optimizer that has not stepped yet has no state; it is left out rather than initialised
    (torch's state-dict API would initialise it with a zero step, which changes Adam's step count).
    """
    optim = _torch_optimizer(optimizer)
    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optim.state:
        state["optimizer"] = get_optimizer_state_dict(model, optim)
    gradients = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    if gradients:  # a save inside an accumulation window keeps the window's gradients
        state["gradients"] = gradients
    with _quiet_single_process():
        dcp.save(state, checkpoint_id=str(directory), no_dist=_single_process())


def load_sharded(model: torch.nn.Module, optimizer: Any, directory: Path, *, model_only: bool = False) -> None:
    """Load what `save_sharded` wrote into `model` / `optimizer`, resharded to this run's processes.

    Raises:
        FileNotFoundError: the checkpoint has no sharded state (it was written without strategy="fsdp").
    """
    if not (directory / ".metadata").is_file():
        raise FileNotFoundError(
            f"{directory} holds no sharded (DCP) state: the checkpoint was written by a run without "
            "strategy='fsdp'. Resume it with the strategy it was trained with, or start from its weights with "
            "`init_weights_from`."
        )
    saved = set(dcp.FileSystemReader(str(directory)).read_metadata().state_dict_metadata)
    has = {part: any(key.startswith(f"{part}.") for key in saved) for part in ("optimizer", "gradients")}
    optim = _torch_optimizer(optimizer)
    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    if has["optimizer"] and not model_only:
        state["optimizer"] = get_optimizer_state_dict(model, optim)
    if has["gradients"] and not model_only:
        state["gradients"] = {
            name: torch.zeros_like(p) for name, p in model.named_parameters() if f"gradients.{name}" in saved
        }
    with _quiet_single_process():
        dcp.load(state, checkpoint_id=str(directory), no_dist=_single_process())
    set_model_state_dict(model, state["model"])
    if model_only:
        return
    if "optimizer" in state:
        set_optimizer_state_dict(model, optim, state["optimizer"])
    gradients = state.get("gradients", {})
    for name, parameter in model.named_parameters():
        parameter.grad = gradients.get(name)
