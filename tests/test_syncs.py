"""The host-sync counter (tamrin.testing.syncs) on known cases: what syncs on a GPU counts, the rest does not.

The run's device (the CPU here) stands for a GPU: a tensor is on the device unless the counter
knows it is on the host (a loader's batch, `.cpu()`, a factory without `device=`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from tamrin.testing.syncs import SyncCounter

DEVICE = torch.device("cpu")  # the run's device: the counter treats it as a GPU


def device_tensor() -> torch.Tensor:
    return torch.arange(6.0, device=DEVICE)


def count(action: Callable[[], object]) -> SyncCounter:
    with SyncCounter() as counter:
        action()
    return counter


READS = {
    ".item()": lambda t: t.sum().item(),
    "bool(t)": lambda t: bool(t.sum() > 0),
    "float(t)": lambda t: float(t[0]),
    "if t.any()": lambda t: 1 if (t > 4).any() else 0,
    ".tolist()": lambda t: t.tolist(),
    ".numpy()": lambda t: t.numpy(),
    ".cpu()": lambda t: t.cpu(),
    "t.to('cpu')": lambda t: t.to("cpu"),
    "t[mask]": lambda t: t[t > 2],
    "t[mask] = 0": lambda t: t.clone().__setitem__(t > 2, 0.0),
    "torch.nonzero": lambda t: torch.nonzero(t),
    "torch.where(cond)": lambda t: torch.where(t > 1),
    "masked_select": lambda t: t.masked_select(t > 1),
    "t[0-d long tensor]": lambda t: t[t.argmax()],
    "torch.equal": lambda t: torch.equal(t, t),
}


@pytest.mark.parametrize("name", list(READS))
def test_each_read_of_a_device_tensor_counts_once(name):
    t = device_tensor()
    counter = count(lambda: READS[name](t))
    assert len(counter.events) == 1, counter.report()


def test_a_read_inside_inference_mode_counts():
    t = device_tensor()

    def read() -> None:
        with torch.inference_mode():
            (t * 2).sum().item()

    assert len(count(read).events) == 1


def test_the_same_reads_of_host_tensors_count_nothing():
    def reads() -> None:
        host = torch.arange(6.0)  # no device=: built on the host
        host.sum().item(), host.tolist(), host[host > 2], host.cpu().numpy(), bool(host.any())

    assert count(reads).events == []


def test_an_arithmetic_training_step_counts_nothing():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 4, device=DEVICE), torch.randint(0, 2, (16,), device=DEVICE)

    def step() -> None:
        for _ in range(3):
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    assert count(step).events == []


# Tensors made before the counter starts (parameters, ...) are on the device: host tensors are made inside.


def test_a_blocking_host_to_device_copy_counts():
    assert [e.kind for e in count(lambda: torch.ones(3).to(DEVICE)).events] == ["copy to device"]


def test_a_pinned_non_blocking_host_to_device_copy_does_not_count():
    assert count(lambda: torch.ones(3).pin_memory().to(DEVICE, non_blocking=True)).events == []


def test_a_non_blocking_copy_from_pageable_memory_counts():
    assert len(count(lambda: torch.ones(3).to(DEVICE, non_blocking=True)).events) == 1


def test_building_a_tensor_from_python_data_on_the_device_counts_and_on_the_host_does_not():
    assert len(count(lambda: torch.tensor([1, 2, 3], device=DEVICE)).events) == 1
    assert count(lambda: torch.tensor([1, 2, 3])).events == []


def test_copy_between_host_and_device_counts_in_both_directions():
    device = device_tensor()
    assert [e.kind for e in count(lambda: device.clone().copy_(torch.zeros(6))).events] == ["copy to device"]
    assert [e.kind for e in count(lambda: torch.zeros(6).copy_(device)).events] == ["copy to host"]


def test_a_data_loaders_collating_counts_nothing_and_its_batches_are_on_the_host():
    def collate(items: list[int]) -> dict[str, torch.Tensor]:
        ids = torch.tensor(items)
        return {"ids": ids, "longest": torch.tensor(int(ids.max()))}

    def load() -> None:
        for batch in DataLoader(list(range(10)), batch_size=4, collate_fn=collate):
            assert counter.side(batch["ids"]) == "host"
            batch["ids"].tolist()

    with SyncCounter() as counter:
        load()
    assert counter.events == []


def test_an_event_names_the_file_and_line_of_the_user_code():
    t = device_tensor()
    line = inspect.currentframe().f_lineno + 1
    counter = count(lambda: t.sum().item())
    assert counter.events[0].where == f"tests/test_syncs.py:{line}"


def test_a_host_tensor_updated_with_device_values_is_taken_for_a_device_tensor():
    """Code that moves a state to the device only on an accelerator (`if x.device != device: x.to(device)`)."""
    values = device_tensor()

    def update_then_read() -> None:
        state = torch.zeros(())  # on the host
        state.add_(values.sum())
        state.item()

    assert len(count(update_then_read).events) == 1


def test_ctc_with_lengths_on_the_device_counts_their_copies_to_the_host_as_avoidable():
    log_probs = torch.randn(8, 2, 5, device=DEVICE).log_softmax(-1).requires_grad_()
    targets = torch.tensor([[1, 2], [3, 0]], device=DEVICE)
    lengths = (torch.full((2,), 8, device=DEVICE), torch.tensor([2, 1], device=DEVICE))
    counter = count(lambda: F.ctc_loss(log_probs, targets, *lengths).backward())
    assert len(counter.avoidable) == 4, counter.report()  # input and target lengths, forward and backward
    assert len(counter.events) - len(counter.avoidable) == 6  # the CUDA kernel's own copies


def test_ctc_with_host_lengths_counts_only_the_kernels_inherent_copies():
    log_probs = torch.randn(8, 2, 5, device=DEVICE).log_softmax(-1).requires_grad_()
    targets = torch.tensor([[1, 2], [3, 0]], device=DEVICE)
    counter = count(lambda: F.ctc_loss(log_probs, targets, (8, 8), [2, 1], reduction="sum").backward())
    assert counter.avoidable == []
    assert all(event.inherent for event in counter.events) and len(counter.events) == 6


def test_the_patched_methods_are_restored_when_the_counter_exits():
    originals = (torch.Tensor.to, torch.Tensor.tolist, torch.tensor, torch.zeros)
    count(lambda: device_tensor().tolist())
    assert (torch.Tensor.to, torch.Tensor.tolist, torch.tensor, torch.zeros) == originals
    assert "to" not in torch.Tensor.__dict__


def test_a_packed_rnn_with_host_lengths_in_sorted_order_counts_nothing():
    """pack_padded_sequence's batch_sizes come back on the host, as CUDA returns them; the RNN reads them there."""
    torch.manual_seed(0)
    rnn = nn.GRU(4, 3, batch_first=True, bidirectional=True)
    inputs = torch.randn(3, 5, 4, device=DEVICE)

    def run() -> None:
        packed = nn.utils.rnn.pack_padded_sequence(inputs, [5, 3, 2], batch_first=True)
        states, _ = rnn(packed)
        nn.utils.rnn.pad_packed_sequence(states, batch_first=True)

    assert count(run).events == []


def test_a_pinned_non_blocking_copy_inside_inference_mode_does_not_count():
    def copy() -> None:
        with torch.inference_mode():
            torch.ones(3).pin_memory().to(DEVICE, non_blocking=True)

    assert count(copy).events == []
