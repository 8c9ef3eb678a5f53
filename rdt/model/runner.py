"""The RDT diffusion runner: condition adaptors + transformer + DDPM training loss + DPM-Solver++ sampling.

``state_dict()`` keys are those of the released checkpoint: ``model.*`` (the transformer), ``lang_adaptor.*``,
``img_adaptor.*``, ``state_adaptor.*``. Parameters are created in float32; on GPU run under
``torch.autocast("cuda", torch.bfloat16)``. The schedulers are diffusers objects, not parameters.

The network predicts the clean action chunk (``prediction_type="sample"``). State and action tokens are embedded
by the same ``state_adaptor`` from ``value (128) || availability mask (128)``. The loss is the plain MSE against
the clean chunk over all entries (not masked); sampled actions are multiplied by the mask at the end.
"""

from __future__ import annotations

import copy
import re
import warnings

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, DPMSolverMultistepScheduler
from torch import nn

from rdt.errors import UserError
from rdt.model.config import RDTConfig
from rdt.model.transformer import RDT


def build_adaptor(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """``linear`` -> Linear; ``mlp{N}x_gelu`` -> Linear(in,out) then (GELU tanh, Linear(out,out)) x (N-1)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    match = re.fullmatch(r"mlp(\d+)x_gelu", kind)
    if not match:
        raise UserError(f"unknown adaptor type {kind!r}; expected 'linear' or 'mlp<N>x_gelu'")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(approximate="tanh"), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


class RDTRunner(nn.Module):
    """``RDTRunner(config)`` builds a randomly initialised model (xavier transformer, zero final fc2, sin-cos
    positional tables, PyTorch-default adaptors). Build under ``torch.device("meta")`` to get shapes only."""

    def __init__(self, config: RDTConfig) -> None:
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.model = RDT(config)
        self.lang_adaptor = build_adaptor(config.lang_adaptor, config.lang_token_dim, d)
        self.img_adaptor = build_adaptor(config.img_adaptor, config.img_token_dim, d)
        self.state_adaptor = build_adaptor(config.state_adaptor, config.state_token_dim * 2, d)
        sched = config.noise_scheduler
        with torch.device("cpu"):  # scheduler tables stay real when the module is built on the meta device
            self.noise_scheduler = DDPMScheduler(
                num_train_timesteps=int(sched["num_train_timesteps"]),
                beta_schedule=sched["beta_schedule"],
                prediction_type=sched["prediction_type"],
                clip_sample=bool(sched["clip_sample"]),
            )
        self._sample_template: DPMSolverMultistepScheduler | None = None

    # ---------------------------------------------------------------------------------------------- helpers
    def sample_scheduler(self) -> DPMSolverMultistepScheduler:
        """A fresh DPM-Solver++ scheduler with its timesteps set. Schedulers are stateful, so every sampling call
        gets its own copy (constructing one from scratch costs ~0.1 s, copying the template ~1 ms)."""
        if self._sample_template is None:
            sched = self.config.noise_scheduler
            # diffusers builds its sigma table with np.array(tensor): a numpy-2 DeprecationWarning
            with torch.device("cpu"), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                template = DPMSolverMultistepScheduler(
                    num_train_timesteps=int(sched["num_train_timesteps"]),
                    beta_schedule=sched["beta_schedule"],
                    prediction_type=sched["prediction_type"],
                )
                template.set_timesteps(int(sched["num_inference_timesteps"]))
            self._sample_template = template
        return copy.deepcopy(self._sample_template)

    def _check(
        self, lang_tokens: torch.Tensor, img_tokens: torch.Tensor, state_tokens: torch.Tensor, action_mask: torch.Tensor
    ) -> None:
        c = self.config
        if (
            lang_tokens.ndim != 3
            or lang_tokens.shape[-1] != c.lang_token_dim
            or lang_tokens.shape[1] > c.max_lang_cond_len
        ):
            raise UserError(
                f"language tokens have shape {tuple(lang_tokens.shape)}; the model expects "
                f"(B, L<={c.max_lang_cond_len}, {c.lang_token_dim}) (text encoder / model mismatch?)"
            )
        if img_tokens.ndim != 3 or tuple(img_tokens.shape[1:]) != (c.img_cond_len, c.img_token_dim):
            raise UserError(
                f"image tokens have shape {tuple(img_tokens.shape)}; the model expects "
                f"(B, {c.img_cond_len}, {c.img_token_dim}) (vision encoder / model mismatch?)"
            )
        for name, t in (("state_tokens", state_tokens), ("action_mask", action_mask)):
            if t.ndim != 3 or t.shape[1] != 1 or t.shape[2] != c.state_token_dim:
                raise UserError(f"{name} has shape {tuple(t.shape)}; expected (B, 1, {c.state_token_dim})")

    def embed_traj(self, values: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
        """State/action values (B,N,128) and mask (B,1,128) -> tokens (B,N,D) via ``state_adaptor``."""
        return self.state_adaptor(torch.cat([values, action_mask.expand(-1, values.shape[1], -1)], dim=-1))

    def denoise(
        self,
        lang_tokens: torch.Tensor,
        lang_mask: torch.Tensor | None,
        img_tokens: torch.Tensor,
        state_tokens: torch.Tensor,
        noisy_action: torch.Tensor,
        action_mask: torch.Tensor,
        ctrl_freqs: torch.Tensor,
        timesteps: torch.Tensor,
    ) -> torch.Tensor:
        """One network evaluation: (B,64,128) noisy chunk at diffusion step ``timesteps`` (B,) -> prediction
        (B,64,128) (the clean chunk for ``prediction_type="sample"``)."""
        self._check(lang_tokens, img_tokens, state_tokens, action_mask)
        traj = self.embed_traj(torch.cat([state_tokens, noisy_action.to(state_tokens.dtype)], dim=1), action_mask)
        return self.model(
            traj,
            ctrl_freqs,
            timesteps,
            self.lang_adaptor(lang_tokens),
            self.img_adaptor(img_tokens),
            lang_mask=None if lang_mask is None else lang_mask.bool(),
        )

    # ---------------------------------------------------------------------------------------------- training
    def forward(self, *args, **kwargs) -> torch.Tensor:
        """Same as ``compute_loss`` (as in the original runner), so DDP / accelerate wrappers can call the model."""
        return self.compute_loss(*args, **kwargs)

    def compute_loss(
        self,
        lang_tokens: torch.Tensor,
        lang_mask: torch.Tensor | None,
        img_tokens: torch.Tensor,
        state_tokens: torch.Tensor,
        action_gt: torch.Tensor,
        action_mask: torch.Tensor,
        ctrl_freqs: torch.Tensor,
        noise: torch.Tensor | None = None,
        timesteps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """DDPM training loss (scalar): noise the clean chunk at random steps (or the given ``noise`` (B,64,128)
        and ``timesteps`` (B,)), predict, MSE against the target over all B*64*128 entries."""
        b = action_gt.shape[0]
        if noise is None:
            noise = torch.randn_like(action_gt)
        if timesteps is None:
            timesteps = torch.randint(0, self.config.num_train_timesteps, (b,), device=action_gt.device)
        timesteps = timesteps.to(action_gt.device).long()
        noisy = self.noise_scheduler.add_noise(action_gt, noise.to(action_gt), timesteps)
        pred = self.denoise(lang_tokens, lang_mask, img_tokens, state_tokens, noisy, action_mask, ctrl_freqs, timesteps)
        target = action_gt if self.config.noise_scheduler["prediction_type"] == "sample" else noise
        return F.mse_loss(pred.float(), target.float())

    # ---------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def predict_action(
        self,
        lang_tokens: torch.Tensor,
        lang_mask: torch.Tensor | None,
        img_tokens: torch.Tensor,
        state_tokens: torch.Tensor,
        action_mask: torch.Tensor,
        ctrl_freqs: torch.Tensor,
        noise: torch.Tensor | None = None,
        reuse_conditions: bool = True,
    ) -> torch.Tensor:
        """Sample an action chunk (B,64,128) with DPM-Solver++ (5 steps) from ``noise`` (default: standard
        normal), multiplied by the mask. The adapted conditions and the state token are computed once; with
        ``reuse_conditions`` every block's cross-attention keys/values are also computed once for all steps
        (``False`` recomputes them each step, as the original code does; same result up to float rounding)."""
        self._check(lang_tokens, img_tokens, state_tokens, action_mask)
        c = self.config
        b, dtype = state_tokens.shape[0], state_tokens.dtype
        if noise is None:
            noise = torch.randn(b, c.pred_horizon, c.action_dim, dtype=dtype, device=state_tokens.device)
        lang_mask = None if lang_mask is None else lang_mask.bool()
        lang_c, img_c = self.lang_adaptor(lang_tokens), self.img_adaptor(img_tokens)
        conditions = self.model.prepare_conditions(lang_c, img_c, lang_mask) if reuse_conditions else None
        state_tok = self.embed_traj(state_tokens, action_mask)  # (B,1,D)
        scheduler = self.sample_scheduler()
        x = noise.to(dtype)
        for t in scheduler.timesteps:
            tokens = torch.cat([state_tok, self.embed_traj(x, action_mask).to(state_tok.dtype)], dim=1)
            out = self.model(
                tokens, ctrl_freqs, t.reshape(1).to(x.device), lang_c, img_c, lang_mask, conditions=conditions
            )
            x = scheduler.step(out.to(dtype), t, x).prev_sample.to(dtype)
        return x * action_mask.to(dtype)

    # ---------------------------------------------------------------------------------------------- misc
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.state_dict().values())


def build_runner(
    config: RDTConfig | str,
    seed: int | None = None,
    device: str | torch.device = "cpu",
) -> RDTRunner:
    """A randomly initialised float32 runner from a config or preset name, deterministic given ``seed``."""
    cfg = RDTConfig.preset(config) if isinstance(config, str) else config
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            runner = RDTRunner(cfg)
    else:
        runner = RDTRunner(cfg)
    return runner.to(device)
