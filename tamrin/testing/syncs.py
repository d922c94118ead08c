"""Count host-device synchronisations on a CPU run, as if the run's device were a GPU.

On a GPU the host waits for the device's queue to drain at every `.item()`, `.tolist()`, `.cpu()`,
`.numpy()`, boolean read (`if t:`), data-dependent shape (`nonzero`, `masked_select`, `t[mask]`)
and blocking copy between host and device. On a CPU run these still pass through the dispatcher or
through a handful of Tensor methods, so `SyncCounter` (a `TorchDispatchMode`, plus those methods
patched while it is active) counts them without a GPU, each with the file:line of the user-level
frame that caused it (the first frame outside the standard library, site-packages and tamrin.testing).

The emulation. Every tensor lives on the *device* unless the counter knows that it is on the host
(so the tensors made before the counter started, such as the parameters, are on the device).
Host tensors are: the batches a DataLoader yields (collating runs on the host, so nothing inside a
loader is counted), the results of `.cpu()` and `torch.from_numpy`, factory calls (`torch.tensor`,
`torch.zeros`, ...) made without `device=` or with the string "cpu", and whatever an op computes
from host tensors alone. A `torch.device` equal to the run's device names the device; on a CPU run
the *string* "cpu" names the host. `t.pin_memory()` marks a host tensor as pinned (without pinning:
a CPU-only build cannot). A copy to the device counts unless it is `non_blocking` from pinned
memory; a copy to the host counts unless it is `non_blocking`.

What it cannot see: a branch that code takes only on a CPU device (the Trainer moves batches only
on an accelerator: `sync_steps.gpu_batches` takes that branch for it; a metric is moved with
`metric.to(device)` only when its device differs, so torchmetrics' defaults stay on the emulated
host and `reset()` counts a copy per state that a GPU run does not make), copies made inside C++
kernels (those that matter are listed in `INHERENT`, with their reason, and counted as inherent),
and reads of raw memory (safetensors writes checkpoints from `data_ptr`, so a save step's count is
a lower bound). On a GPU, `torch.cuda.set_sync_debug_mode("warn")` checks the same counts.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import os
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import dataloader as torch_dataloader
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["INHERENT", "SyncCounter", "SyncEvent", "format_events"]

DEVICE, HOST, PINNED = "device", "host", "pinned"

INHERENT: dict[str, tuple[int, str]] = {
    "_ctc_loss": (
        3,
        "PyTorch's CUDA CTC forward copies the target lengths, input lengths and batch offsets from "
        "pageable host memory (LossCTC.cu: at::tensor(...) x2, tg_batch_offsets.cuda())",
    ),
    "_ctc_loss_backward": (3, "PyTorch's CUDA CTC backward makes the same three host-to-device copies (LossCTC.cu)"),
}
"""Ops whose CUDA kernels copy from the host internally: (copies per call, why no caller can avoid them)."""

_SCALAR_OPS = frozenset({"_local_scalar_dense", "item", "is_nonzero"})
_SHAPE_OPS = frozenset(
    {"nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive", "bincount"}
)
_FACTORIES = (
    "zeros", "ones", "empty", "full", "arange", "rand", "randn", "randint", "randperm", "linspace", "logspace",
    "eye", "empty_strided",
)  # fmt: skip
_HOST_OUTPUTS = {"_pack_padded_sequence": (1,), "_pad_packed_sequence": (1,)}  # CUDA kernels return these on the CPU
_LIKE_FACTORIES = ("zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like")
_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep  # tamrin/testing: the counter and its helpers
_LIBRARY_DIRS = tuple(
    {os.path.realpath(sysconfig.get_paths()[key]) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")}
)


@dataclasses.dataclass(frozen=True)
class SyncEvent:
    """One host-device synchronisation.

    Attributes:
        kind: "read" (a value to the host), "shape" (a data-dependent shape), "copy to device" or "copy to host".
        op: what did it, e.g. "aten._local_scalar_dense" (`.item()`, `bool(t)`) or "Tensor.tolist".
        where: file:line of the user-level frame.
        inherent: why no caller can avoid it ("" when it is avoidable).
    """

    kind: str
    op: str
    where: str
    inherent: str = ""


def format_events(events: list[SyncEvent]) -> str:
    """One line per (where, op, kind) with its count, most frequent first; the inherent ones' reasons last."""
    counts = collections.Counter((e.where, e.op, e.kind, bool(e.inherent)) for e in events)
    lines = [
        f"{count:4d} x {kind:<14} {op:<40} {where}{'  [inherent]' if inherent else ''}"
        for (where, op, kind, inherent), count in counts.most_common()
    ]
    reasons = sorted({f"{e.op}: {e.inherent}" for e in events if e.inherent})
    return "\n".join(lines + [f"inherent: {reason}" for reason in reasons])


def _tensors_in(tree: Any) -> Iterator[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, Mapping):
        for value in tree.values():
            yield from _tensors_in(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _tensors_in(value)


def _written(func: Any, args: tuple, kwargs: dict) -> list[Any]:
    """The arguments an in-place op writes to.

    A host tensor written with device values would fail on a GPU (the devices differ), so it is one
    that the code moves to the device only on an accelerator (`if metric.device != device:
    metric.to(device)`): the caller places it on the device.
    """
    written = []
    for index, argument in enumerate(func._schema.arguments):
        if argument.alias_info is not None and argument.alias_info.is_write:
            written.append(args[index] if index < len(args) else kwargs.get(argument.name))
    return written


def _user_frame() -> str:
    """file:line of the innermost frame outside the standard library, site-packages and tamrin.testing."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith("<") or filename.startswith(_OWN_DIR) or _is_library(filename)):
            return f"{_short_path(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


@functools.cache
def _is_library(filename: str) -> bool:
    return os.path.realpath(filename).startswith(_LIBRARY_DIRS)


@functools.cache
def _short_path(filename: str) -> str:
    """The path from the repository (the folder above the `tamrin` package) or the working directory."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for base in (root, os.getcwd()):
        relative = os.path.relpath(os.path.abspath(filename), base)
        if not relative.startswith(".."):
            return relative
    return filename


class SyncCounter(TorchDispatchMode):
    """Records every host-device synchronisation while it is active (`with SyncCounter() as counter:`).

    Args:
        device: the run's device, treated as a GPU (default: the CPU).

    Attributes:
        events: every SyncEvent so far, in order.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.device = torch.device(device)
        self.events: list[SyncEvent] = []
        self._side: WeakIdKeyDictionary = WeakIdKeyDictionary()  # host tensors only: absent means device
        self._paused = 0
        self._patched: list[tuple[Any, str, Any]] = []

    # -- results --------------------------------------------------------------------------------
    @property
    def avoidable(self) -> list[SyncEvent]:
        """The events some caller could avoid (not in INHERENT)."""
        return [event for event in self.events if not event.inherent]

    def report(self, events: list[SyncEvent] | None = None) -> str:
        """`format_events` of `events` (default: all of them)."""
        return format_events(self.events if events is None else events)

    # -- residence ------------------------------------------------------------------------------
    def side(self, tensor: torch.Tensor) -> str:
        """Where the emulation holds `tensor`: "device", "host" or "pinned" (host)."""
        return self._side.get(tensor, DEVICE)

    def mark_pinned(self, tree: Any) -> None:
        """Treat the host tensors in `tree` as pinned (what a DataLoader with pin_memory=True yields on a GPU)."""
        for tensor in _tensors_in(tree):
            if self.side(tensor) == HOST:
                self._side[tensor] = PINNED

    def _place(self, tree: Any, side: str) -> None:
        for tensor in _tensors_in(tree):
            if side == DEVICE:
                self._side.pop(tensor, None)
            else:
                self._side[tensor] = side

    def _side_of(self, device: Any) -> str | None:
        """The side a `device=` argument names (None: no device given). A string "cpu" is the host."""
        if device is None:
            return None
        if isinstance(device, torch.Tensor):
            return self.side(device)
        named = torch.device(device) if not isinstance(device, int) else torch.device(self.device.type, device)
        if named.type != self.device.type or (isinstance(device, str) and named.type == "cpu"):
            return HOST
        return DEVICE

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Count nothing inside (host-only work such as collating a batch)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    # -- recording -------------------------------------------------------------------------------
    def _record(self, kind: str, op: str, inherent: str = "") -> None:
        self.events.append(SyncEvent(kind, op, _user_frame(), inherent))

    def _transfer(self, source: str, target: str, non_blocking: bool, op: str) -> None:
        """Record a copy between host and device when it makes the host wait."""
        if source != DEVICE and target == DEVICE and not (non_blocking and source == PINNED):
            self._record("copy to device", op)
        elif source == DEVICE and target != DEVICE and not non_blocking:
            self._record("copy to host", op)

    def _alias(self, tensor: torch.Tensor) -> torch.Tensor:
        """A new tensor object over the same data, so that the original keeps its side."""
        with self.paused():
            return tensor.view_as(tensor)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self._paused:
            return func(*args, **kwargs)
        inputs = list(_tensors_in((args, kwargs)))
        self._check_op(func, args, kwargs, inputs)
        out = func(*args, **kwargs)
        if not func._schema.is_mutable:
            if inputs and all(self.side(t) != DEVICE for t in inputs):
                given = {id(t) for t in inputs}  # an op may return its input itself (a pinned one stays pinned)
                self._place([t for t in _tensors_in(out) if id(t) not in given], HOST)
            for index in _HOST_OUTPUTS.get(func.overloadpacket.__name__, ()):
                self._place(out[index], HOST)
        elif func.overloadpacket.__name__ != "copy_" and any(self.side(t) == DEVICE for t in inputs):
            self._place(_written(func, args, kwargs), DEVICE)
        return out

    def _check_op(self, func: Any, args: tuple, kwargs: dict, inputs: list[torch.Tensor]) -> None:
        name = func.overloadpacket.__name__
        on_device = any(self.side(t) == DEVICE for t in inputs)
        if name in _SCALAR_OPS:  # .item(), float(t), bool(t); inference mode dispatches item / is_nonzero whole
            if on_device:
                self._record("read", f"aten.{name}")
        elif name in _SHAPE_OPS or name == "equal":
            if on_device:
                self._record("read" if name == "equal" else "shape", f"aten.{name}")
        elif name == "repeat_interleave":
            if on_device and kwargs.get("output_size") is None:
                self._record("shape", "aten.repeat_interleave")
        elif name in ("index", "index_put", "index_put_", "_index_put_impl_"):
            masks = [i for i in args[1] if isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)]
            if masks and on_device:
                self._record("shape", f"aten.{name} (boolean mask)")
        elif name == "copy_":
            non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking", False)
            self._transfer(self.side(args[1]), self.side(args[0]), bool(non_blocking), "aten.copy_")
        elif name in INHERENT:
            self._check_ctc(func, args)

    def _check_ctc(self, func: Any, args: tuple) -> None:
        """CTC: lengths given as device tensors go to the host first (avoidable); the kernel's own copies do not."""
        name = func.overloadpacket.__name__
        first_length = 2 if name == "_ctc_loss" else 3
        if func._overloadname == "Tensor":
            for lengths in args[first_length : first_length + 2]:
                if self.side(lengths) == DEVICE:
                    self._record("copy to host", f"aten.{name} (lengths on the device)")
        copies, reason = INHERENT[name]
        for _ in range(copies):
            self._record("copy to device", f"aten.{name}", inherent=reason)

    # -- patches ---------------------------------------------------------------------------------
    def __enter__(self) -> SyncCounter:
        self._install_patches()
        try:
            super().__enter__()
        except BaseException:
            self._remove_patches()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            self._remove_patches()

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)
        self._patched.append((owner, name, owner.__dict__.get(name, _ABSENT)))
        setattr(owner, name, functools.wraps(original)(make(original)))

    def _remove_patches(self) -> None:
        while self._patched:
            owner, name, saved = self._patched.pop()
            if saved is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, saved)

    def _install_patches(self) -> None:
        from tamrin.testing import sync_patches as patches

        tensor = torch.Tensor
        self._patch(tensor, "to", lambda original: patches.to(self, original))
        self._patch(tensor, "cpu", lambda original: patches.cpu(self, original))
        for name in ("tolist", "numpy"):
            self._patch(tensor, name, functools.partial(patches.read, self, op=f"Tensor.{name}"))
        self._patch(tensor, "pin_memory", lambda original: patches.pin_memory(self, original))
        self._patch(tensor, "is_pinned", lambda original: patches.is_pinned(self, original))
        self._patch(tensor, "new_tensor", lambda original: patches.new_tensor(self, original))
        self._patch(torch, "tensor", lambda original: patches.tensor(self, original))
        self._patch(torch, "as_tensor", lambda original: patches.as_tensor(self, original))
        self._patch(torch, "from_numpy", lambda original: patches.on_host(self, original))
        for name in _FACTORIES:
            self._patch(torch, name, lambda original: patches.factory(self, original, default=HOST))
        for name in _LIKE_FACTORIES:
            self._patch(torch, name, lambda original: patches.factory(self, original, default=None))
        iterator = torch_dataloader._BaseDataLoaderIter
        self._patch(iterator, "__init__", lambda original: patches.host_work(self, original))
        self._patch(iterator, "__next__", lambda original: patches.host_work(self, original, yields_batches=True))


_ABSENT = object()
