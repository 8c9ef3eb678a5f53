"""Building blocks of the RDT transformer. Module and parameter names follow the released checkpoint
(timm's ``Attention`` / ``Mlp`` naming: ``qkv``, ``q_norm``, ``k_norm``, ``proj``, ``fc1``, ``fc2``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdt.model.posemb import timestep_sinusoid


class _VarRMSNorm(torch.autograd.Function):
    """``x * rsqrt(var_unbiased(x) + eps) * w`` over the last dim, with the forward ops of timm 1.0.3's ``rms_norm``
    and, in backward, the formulas autograd applies to them, in the same order: in float32, results and gradients
    are bit-identical to the original code's, but only ``x``, ``w`` and the per-row ``rsqrt`` are kept for backward
    (autograd keeps ``x * rsqrt`` too, a tensor the size of ``x``: +1 activation per norm, the image keys' norm of
    every odd block included). ``x`` comes in twice so that its two gradient terms (direct, through the variance)
    reach autograd as two contributions, summed in the order autograd sums them for the unfused ops."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, x_again: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        r = torch.rsqrt(torch.var(x, dim=-1, keepdim=True) + eps)
        ctx.save_for_backward(x, w, r)
        return x * r * w

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        # products are formed as autograd forms them (a * b and b * a round alike); the in-place ones reuse
        # temporaries of this function only, so that at most three x-sized tensors are alive at once
        x, w, r = ctx.saved_tensors
        gw = None
        if ctx.needs_input_grad[2]:  # mul backward of (x * r) * w, for w: sum_to(grad * (x * r))
            gw = (x * r).mul_(g).sum_to_size(w.shape)
        gxr = g * w  # ... for x * r: grad * w
        gx = gxr * r  # mul backward of x * r, for x
        gr = gxr.mul_(x).sum_to_size(r.shape)  # ... for r
        del gxr
        gv = -0.5 * gr * r.pow(3)  # rsqrt backward; the + eps passes the gradient on
        # torch's var_backward: (2 / (N - 1)) * grad * (x - mean(x))
        gx_var = (x - x.mean(dim=-1, keepdim=True)).mul_((2.0 / (x.shape[-1] - 1)) * gv)
        return gx, gx_var, gw, None


class RMSNorm(nn.Module):
    """Per-token normalisation over the last dim, eps 1e-6, learned scale ``weight`` (init 1), no bias.

    ``kind="unbiased_var"``: ``x * rsqrt(var_unbiased(x) + eps) * w`` - what RDT's pinned timm 1.0.3 computes
    (its fallback ``rms_norm`` divides by the mean-subtracted, /(N-1) variance); one autograd node
    (:class:`_VarRMSNorm`) with the original's numerics that keeps less for backward. ``kind="mean_square"``:
    ``x * rsqrt(mean(x^2) + eps) * w``. Computed in the input dtype; the result has the input dtype.
    """

    def __init__(self, dim: int, eps: float = 1e-6, kind: str = "unbiased_var") -> None:
        super().__init__()
        if kind not in ("unbiased_var", "mean_square"):
            raise ValueError(f"unknown RMSNorm kind {kind!r}")
        self.eps = eps
        self.kind = kind
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        if self.kind == "unbiased_var":
            return _VarRMSNorm.apply(x, x, w, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * w


class Mlp(nn.Module):
    """fc1 -> GELU(tanh) -> fc2 (timm ``Mlp`` names; dropout 0)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B,H,N,hd) x (B,H,L,hd) -> (B,N,H*hd). The q/k norms may promote dtypes under autocast; SDPA needs one."""
    q, k = q.to(v.dtype), k.to(v.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    b, h, n, hd = out.shape
    return out.transpose(1, 2).reshape(b, n, h * hd)


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention; ``qkv`` output channels are ordered [q | k | v], each split into
    heads; q and k are RMS-normalised per head."""

    def __init__(self, dim: int, num_heads: int, norm_kind: str) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.q_norm = RMSNorm(self.head_dim, kind=norm_kind)
        self.k_norm = RMSNorm(self.head_dim, kind=norm_kind)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B,H,N,hd) each
        return self.proj(_sdpa(self.q_norm(q), self.k_norm(k), v))


class CrossAttention(nn.Module):
    """Multi-head attention from the action tokens to condition tokens; ``kv`` output channels are [k | v].

    ``project_kv(c)`` gives the (normalised) keys and values of a condition once, so the 5 sampling steps
    can share them (they do not depend on the noisy actions).
    """

    def __init__(self, dim: int, num_heads: int, norm_kind: str) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.q_norm = RMSNorm(self.head_dim, kind=norm_kind)
        self.k_norm = RMSNorm(self.head_dim, kind=norm_kind)
        self.proj = nn.Linear(dim, dim)

    def project_kv(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,L,D) condition -> keys, values (B,H,L,hd) each."""
        b, length, _ = c.shape
        kv = self.kv(c).reshape(b, length, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        return self.k_norm(k), v

    def forward(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B,N,D); kv from ``project_kv``; mask (B,L) bool, True = attend (None = all)."""
        b, n, _ = x.shape
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B,H,N,hd)
        k, v = kv
        attn_mask = None if mask is None else mask.reshape(mask.shape[0], 1, 1, -1).expand(-1, -1, n, -1)
        return self.proj(_sdpa(self.q_norm(q), k, v, attn_mask))


class RDTBlock(nn.Module):
    """x += attn(norm1 x); x += cross_attn(norm2 x, c); x += ffn(norm3 x). FFN hidden width = D, GELU tanh."""

    def __init__(self, dim: int, num_heads: int, norm_kind: str) -> None:
        super().__init__()
        self.norm1 = RMSNorm(dim, kind=norm_kind)
        self.attn = SelfAttention(dim, num_heads, norm_kind)
        self.cross_attn = CrossAttention(dim, num_heads, norm_kind)
        self.norm2 = RMSNorm(dim, kind=norm_kind)
        self.ffn = Mlp(dim, dim, dim)
        self.norm3 = RMSNorm(dim, kind=norm_kind)

    def forward(
        self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), kv, mask)
        return x + self.ffn(self.norm3(x))


class TimestepEmbedder(nn.Module):
    """Scalar (diffusion step or control frequency in Hz) -> (N, D): 256-dim ``[cos, sin]`` sinusoid, then
    Linear -> SiLU -> Linear (keys ``mlp.0``, ``mlp.2``)."""

    def __init__(self, dim: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_sinusoid(t, self.frequency_embedding_size)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class FinalLayer(nn.Module):
    """norm_final -> ffn_final (D -> D -> out_dim, GELU tanh); no conditioning."""

    def __init__(self, dim: int, out_dim: int, norm_kind: str) -> None:
        super().__init__()
        self.norm_final = RMSNorm(dim, kind=norm_kind)
        self.ffn_final = Mlp(dim, dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_final(self.norm_final(x))
