"""Exponential moving average of the model weights with RDT's decay schedule, kept in float32.

RDT (models/ema_model.py) uses ``decay(n) = clip(1 - (1 + n / inv_gamma)^-power, min, max)`` with
``n = max(0, optimization_step - update_after_step - 1)`` and ``decay = 0`` while ``n <= 0``. Unlike the original
code, :meth:`EMA.step` is called once per *optimizer* step (not per micro-batch), and the average is float32
whatever the training precision. Parameters that do not require gradients and buffers are copied.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


# not diffusers' EMAModel (whose decay schedule is the same): that keeps a list of shadow tensors, so sampling and
# export would need a copy_to into a model each time, buffers are not averaged, and its update s - (1-d)(s - p)
# does not make the decay-0 first step an exact copy; this keeps an fp32 model, stepped once per optimizer step
class EMA:
    """``ema = EMA(model, decay_fn)``; after each optimizer step ``ema.step(model)``; ``ema.model`` is an fp32 copy
    in eval mode holding the averaged weights (usable for ``predict_action`` and for export)."""

    def __init__(self, model: nn.Module, decay_fn: Callable[[int], float]):
        self.model = copy.deepcopy(model).float().eval()
        self.model.requires_grad_(False)
        self.decay_fn = decay_fn
        self.optimization_step = 0

    @property
    def decay(self) -> float:
        """The decay that the next :meth:`step` will use."""
        return self.decay_fn(self.optimization_step + 1)

    @torch.no_grad()
    def step(self, model: nn.Module) -> float:
        """Fold the current weights of ``model`` into the average; returns the decay used."""
        self.optimization_step += 1
        decay = self.decay_fn(self.optimization_step)
        live = dict(model.named_parameters())
        for name, ema_p in self.model.named_parameters():
            p = live[name]
            if not p.requires_grad:
                ema_p.copy_(p.detach().float())
            else:
                ema_p.mul_(decay).add_(p.detach().float(), alpha=1.0 - decay)
        live_buffers = dict(model.named_buffers())
        for name, ema_b in self.model.named_buffers():
            ema_b.copy_(live_buffers[name])
        return decay

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (fp32), with the model's own keys."""
        return self.model.state_dict()

    def load_state_dict(self, weights: dict[str, torch.Tensor], optimization_step: int) -> None:
        self.model.load_state_dict(weights, strict=True)
        self.optimization_step = optimization_step
