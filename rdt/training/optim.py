"""The recipe's optimizer, LR schedule and EMA, built in one place for the trainer and bench/train_step.py."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from rdt import train_config


def adamw(params: Iterable[nn.Parameter], cfg: train_config.TrainConfig) -> torch.optim.AdamW:
    """AdamW with the run's learning rate, betas, epsilon and weight decay (fp32 master weights: the parameters')."""
    return torch.optim.AdamW(
        params,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay,
        eps=cfg.adam_eps,
    )


def lr_schedule(optimizer: torch.optim.Optimizer, cfg: train_config.TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over ``lr_warmup_steps`` optimizer steps, then constant; stepped once per optimizer step.
    The counter k = optimizer steps done; step k+1 uses learning_rate x lr_factor(k+1)."""
    # not diffusers' constant_with_warmup: it gives optimizer step 1 an LR of 0 (k / warmup at counter k), ours
    # gives step n n / warmup, so no step of the warmup is wasted (tests/test_train.py pins the values)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: cfg.lr_factor(k + 1))


def ema(model: nn.Module, cfg: train_config.TrainConfig):
    """The fp32 EMA of ``model`` with RDT's decay schedule (rdt/ema.py), stepped once per optimizer step."""
    from rdt.ema import EMA

    return EMA(model, cfg.ema_decay)
