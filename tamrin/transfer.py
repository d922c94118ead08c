"""Copying small host tensors to the device without making the host wait.

A copy from pageable host memory to a GPU blocks the host until the GPU has drained its queue; from
pinned memory with `non_blocking=True` it is queued like a kernel. The index and length tensors
that tamrin builds on the host every step (a packed RNN's sort order, CTC's length divisor, the
NaN guard's step numbers) go to the device this way.
"""

from __future__ import annotations

import torch

__all__ = ["host_to_device"]


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` (built on the host) on `device`, copied without a host sync.

    On CUDA the copy reads a pinned buffer; PyTorch's caching host allocator does not reuse that
    buffer before the copy has run, so the caller may drop `tensor` at once. On a CPU run there is
    nothing to copy.
    """
    if tensor.device == device:
        return tensor
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
