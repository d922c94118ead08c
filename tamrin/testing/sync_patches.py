"""The Tensor methods and torch functions that a `SyncCounter` replaces while it is active.

`.to()`, `.cpu()`, `.tolist()`, `.numpy()` and the factories never reach the dispatcher on a CPU
run in a form that says where the data goes (`t.to("cpu")` returns `t` itself, `torch.tensor(data,
device=...)` shows only as `lift_fresh`). Each wrapper here calls the original, then records the
sync and sets the side of the result as syncs.py's docstring describes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from tamrin.testing.syncs import DEVICE, HOST, PINNED

if TYPE_CHECKING:
    from tamrin.testing.syncs import SyncCounter

Wrapper = Callable[..., Any]


def _device_argument(args: tuple, kwargs: dict) -> Any:
    """The `device` of a `.to(...)` call (a device, a string, an ordinal or a tensor to match), or None."""
    if "device" in kwargs:
        return kwargs["device"]
    if args and isinstance(args[0], (str, torch.device, torch.Tensor)):
        return args[0]
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        return args[0]
    return None


def _non_blocking(args: tuple, kwargs: dict) -> bool:
    """`non_blocking` of `.to(device, dtype, non_blocking)`, `.to(dtype, non_blocking)`, `.to(other, non_blocking)`."""
    if "non_blocking" in kwargs:
        return bool(kwargs["non_blocking"])
    position = 2 if args and isinstance(args[0], (str, torch.device, int)) else 1
    return len(args) > position and bool(args[position])


def _moved(
    counter: SyncCounter, source: torch.Tensor, out: Any, target: str | None, non_blocking: bool, op: str
) -> Any:
    """Record the copy of `source` to the side `target` (None: no device named) and place `out` there."""
    if target is None or (counter.side(source) == DEVICE) == (target == DEVICE):
        return out  # same side (a dtype change of a host tensor stays on the host: the dispatcher placed it)
    counter._transfer(counter.side(source), target, non_blocking, op)
    if out is source:  # t.to(cpu) on a CPU run returns t itself: its alias takes the other side
        out = counter._alias(out)
    counter._place(out, target)
    return out


def _created(counter: SyncCounter, out: torch.Tensor, data: Any, target: str, op: str) -> torch.Tensor:
    """Place a tensor built from `data` on `target`, recording the copy when `data` came from the other side."""
    source = counter.side(data) if isinstance(data, torch.Tensor) else HOST
    counter._transfer(source, target, False, op)
    counter._place(out, target)
    return out


def to(counter: SyncCounter, original: Wrapper) -> Wrapper:
    def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        if counter._paused:
            return out
        target = counter._side_of(_device_argument(args, kwargs))
        return _moved(counter, self, out, target, _non_blocking(args, kwargs), "Tensor.to")

    return wrapper


def cpu(counter: SyncCounter, original: Wrapper) -> Wrapper:
    def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = original(self, *args, **kwargs)
        return out if counter._paused else _moved(counter, self, out, HOST, False, "Tensor.cpu")

    return wrapper


def read(counter: SyncCounter, original: Wrapper, op: str) -> Wrapper:
    """`.tolist()`, `.numpy()`: a read of every element (one sync)."""

    def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not counter._paused and counter.side(self) == DEVICE:
            counter._record("read", op)
        return original(self, *args, **kwargs)

    return wrapper


def pin_memory(counter: SyncCounter, original: Wrapper) -> Wrapper:
    """A pinned copy of a host tensor (not really pinned: a CPU-only build cannot pin)."""

    def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if counter.side(self) == DEVICE:
            raise RuntimeError("SyncCounter: cannot pin a tensor on the device; only host tensors can be pinned.")
        with counter.paused():
            out = self.clone()
        counter._place(out, PINNED)
        return out

    return wrapper


def is_pinned(counter: SyncCounter, original: Wrapper) -> Wrapper:
    def wrapper(self: torch.Tensor, *args: Any, **kwargs: Any) -> bool:
        return counter.side(self) == PINNED

    return wrapper


def new_tensor(counter: SyncCounter, original: Wrapper) -> Wrapper:
    def wrapper(self: torch.Tensor, data: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(self, data, *args, **kwargs)
        if counter._paused:
            return out
        target = counter._side_of(kwargs.get("device")) or counter.side(self)
        return _created(counter, out, data, DEVICE if target == DEVICE else HOST, "Tensor.new_tensor")

    return wrapper


def tensor(counter: SyncCounter, original: Wrapper) -> Wrapper:
    def wrapper(data: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(data, *args, **kwargs)
        if counter._paused:
            return out
        target = counter._side_of(kwargs.get("device")) or HOST
        if target == HOST and kwargs.get("pin_memory"):
            target = PINNED
        return _created(counter, out, data, target, "torch.tensor")

    return wrapper


def as_tensor(counter: SyncCounter, original: Wrapper) -> Wrapper:
    def wrapper(data: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(data, *args, **kwargs)
        if counter._paused:
            return out
        target = counter._side_of(kwargs.get("device", args[1] if len(args) > 1 else None))
        if isinstance(data, torch.Tensor):
            return _moved(counter, data, out, target, False, "torch.as_tensor")
        return _created(counter, out, data, target or HOST, "torch.as_tensor")

    return wrapper


def on_host(counter: SyncCounter, original: Wrapper) -> Wrapper:
    """`torch.from_numpy`: the tensor shares a host array's memory."""

    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(*args, **kwargs)
        counter._place(out, HOST)
        return out

    return wrapper


def factory(counter: SyncCounter, original: Wrapper, *, default: str | None) -> Wrapper:
    """`torch.zeros(..., device=...)` and kin: on the device named, else `default` (None: keep the dispatcher's)."""

    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(*args, **kwargs)
        if counter._paused:
            return out
        target = counter._side_of(kwargs.get("device")) or default
        if target is not None:
            counter._place(out, PINNED if target == HOST and kwargs.get("pin_memory") else target)
        return out

    return wrapper


def host_work(counter: SyncCounter, original: Wrapper, *, yields_batches: bool = False) -> Wrapper:
    """A DataLoader iterator's work runs on the host: count nothing in it; its batches are host tensors."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with counter.paused():
            out = original(self, *args, **kwargs)
        if yields_batches:
            counter._place(out, HOST)
        return out

    return wrapper
