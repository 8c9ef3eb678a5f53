"""RMSNorm of kind unbiased_var (what RDT's pinned timm 1.0.3 computes) is one autograd function
(rdt.model.blocks._VarRMSNorm, issue 21 item 9): its output and gradients are bit-identical in float32 to the unfused
ops autograd differentiates (so training follows the original code exactly), also when x feeds a residual as in the
transformer's blocks, and it keeps less for backward than the unfused ops."""

from __future__ import annotations

import torch

from rdt.model.blocks import RMSNorm, _VarRMSNorm

EPS = 1e-6


def unfused(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """timm 1.0.3's rms_norm fallback: x * rsqrt(var_unbiased(x) + eps) * w, as separate autograd ops."""
    return x * torch.rsqrt(torch.var(x, dim=-1, keepdim=True) + EPS) * w


def _grads(norm, x0: torch.Tensor, w0: torch.Tensor, g: torch.Tensor, residual: bool):
    x, w = x0.clone().requires_grad_(), w0.clone().requires_grad_()
    y = norm(x, w)
    if residual:  # x also reaches the output directly, as in a block's pre-norm residual
        y = y + x
    y.backward(g)
    return y.detach(), x.grad, w.grad


def test_output_and_gradients_are_bit_identical_to_the_unfused_ops():
    gen = torch.Generator().manual_seed(0)
    for shape in [(2, 7, 32), (3, 1, 128), (1, 4374, 64)]:
        x0 = torch.randn(*shape, generator=gen) * 3 + 0.5
        w0 = torch.rand(shape[-1], generator=gen) + 0.5
        g = torch.randn(*shape, generator=gen)
        for residual in (False, True):
            ours = _grads(lambda x, w: _VarRMSNorm.apply(x, x, w, EPS), x0, w0, g, residual)
            theirs = _grads(unfused, x0, w0, g, residual)
            for a, b in zip(ours, theirs, strict=True):
                assert torch.equal(a, b), (shape, residual, (a - b).abs().max())


def test_the_module_uses_it_and_gradcheck_holds_in_float64():
    norm = RMSNorm(16).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True)
    assert torch.equal(norm(x), unfused(x, norm.weight))
    assert torch.autograd.gradcheck(lambda x, w: _VarRMSNorm.apply(x, x, w, EPS), (x, norm.weight))


def _saved_bytes(fn, x: torch.Tensor, w: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward of ``fn``."""
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x.clone().requires_grad_(), w.clone().requires_grad_())
    return sum(saved.values())


def test_it_keeps_less_for_backward_than_the_unfused_ops():
    x, w = torch.randn(4, 729, 256), torch.ones(256)
    ours = _saved_bytes(lambda x, w: _VarRMSNorm.apply(x, x, w, EPS), x, w)
    theirs = _saved_bytes(unfused, x, w)
    size = x.numel() * x.element_size()
    assert ours < theirs and theirs - ours >= size  # at least one x-sized activation fewer
