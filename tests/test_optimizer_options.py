"""`optimizer_kwargs`: the torch optimizer's own options (fused, foreach, betas, ...), checked up front."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tamrin import Trainer, TrainerConfig
from tamrin.configs import ConfigError
from tamrin.testing.syncs import SyncCounter
from tamrin.trainer.optim import build_optimizer


def parameters() -> list[nn.Parameter]:
    return [nn.Parameter(torch.zeros(3))]


def test_the_options_reach_the_torch_optimizer():
    optimizer = build_optimizer(
        "adamw", parameters(), learning_rate=1e-3, weight_decay=0.0, kwargs={"fused": True, "betas": (0.9, 0.95)}
    )
    assert optimizer.defaults["fused"] is True and tuple(optimizer.defaults["betas"]) == (0.9, 0.95)


def test_an_unknown_option_names_the_optimizer_its_options_and_the_closest():
    with pytest.raises(ConfigError, match=r"`optimizer_kwargs.fuse` is not an option of optimizer='adamw' \(AdamW\)\. "
                       r"Valid: betas, eps, .*fused\. Did you mean `fused`\?"):  # fmt: skip
        TrainerConfig(optimizer="adamw", optimizer_kwargs={"fuse": True})


def test_the_learning_rate_is_refused_in_the_options_for_its_own_field():
    with pytest.raises(ConfigError, match=r"`optimizer_kwargs.lr` is set by its own field: use `learning_rate`"):
        TrainerConfig(optimizer="sgd", optimizer_kwargs={"lr": 0.1})


def test_fused_and_foreach_together_are_refused_when_the_config_is_built():
    with pytest.raises(ConfigError, match=r"sets both `fused` and `foreach`"):
        TrainerConfig(optimizer="adam", optimizer_kwargs={"fused": True, "foreach": True})


def test_a_value_the_optimizer_refuses_is_a_config_error_naming_the_options():
    with pytest.raises(ConfigError, match=r"`optimizer_kwargs=\{'betas': 3\}` do not fit optimizer='adamw' \(AdamW\)"):
        build_optimizer("adamw", parameters(), learning_rate=1e-3, weight_decay=0.0, kwargs={"betas": 3})


def test_the_options_survive_a_save_and_load(tmp_path):
    config = TrainerConfig(optimizer="adamw", optimizer_kwargs={"fused": True, "eps": 1e-6})
    config.save(tmp_path)
    assert TrainerConfig.load(tmp_path).optimizer_kwargs == {"fused": True, "eps": 1e-6}


def test_the_trainer_builds_its_optimizer_with_the_options(tmp_path):
    config = TrainerConfig(output_dir=str(tmp_path), optimizer="adamw", optimizer_kwargs={"fused": True}, device="cpu")
    trainer = Trainer(nn.Linear(2, 2), config)
    assert trainer.optimizer.optimizer.defaults["fused"] is True


@pytest.mark.parametrize(("fused", "reads"), [(False, 3), (True, 0)])
def test_a_fused_adamw_removes_the_fp16_grad_scalers_host_read_per_update(fused, reads):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    scaler = torch.amp.GradScaler("cpu")
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with SyncCounter() as counter:
        for _ in range(3):
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # unfused: reads found_inf on the host to decide whether to step
            scaler.update()
            optimizer.zero_grad()
    assert len(counter.events) == reads
