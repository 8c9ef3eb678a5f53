"""The diffusion runner on the tiny preset: initialisation, loss, sampling, condition reuse, concurrency."""

from __future__ import annotations

import threading

import pytest
import torch

from rdt.errors import UserError
from rdt.model.blocks import RMSNorm
from rdt.model.config import RDTConfig
from rdt.model.runner import RDTRunner, build_runner

pytestmark = pytest.mark.usefixtures("one_torch_thread")


B = 2


def _inputs(cfg: RDTConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(B, 1, cfg.state_token_dim, generator=g) > 0.5).float()
    lang_mask = torch.ones(B, 7, dtype=torch.bool)
    lang_mask[1, 5:] = False
    return dict(
        lang_tokens=torch.randn(B, 7, cfg.lang_token_dim, generator=g),
        lang_mask=lang_mask,
        img_tokens=torch.randn(B, cfg.img_cond_len, cfg.img_token_dim, generator=g),
        state_tokens=torch.randn(B, 1, cfg.state_token_dim, generator=g) * mask,
        action_mask=mask,
        ctrl_freqs=torch.tensor([20, 25]),
    )


def _trained_like(seed: int = 0) -> RDTRunner:
    """Tiny runner whose final layer is not zero (a fresh one predicts exactly 0)."""
    runner = build_runner("tiny", seed=seed).eval()
    with torch.no_grad():
        torch.manual_seed(seed)
        runner.model.final_layer.ffn_final.fc2.weight.normal_(std=0.05)
    return runner


def test_random_init_facts():
    runner = build_runner("tiny", seed=1)
    fc2 = runner.model.final_layer.ffn_final.fc2
    assert torch.count_nonzero(fc2.weight) == 0 and torch.count_nonzero(fc2.bias) == 0
    assert torch.count_nonzero(runner.model.blocks[0].attn.qkv.bias) == 0
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in runner.modules() if isinstance(m, RMSNorm))
    assert all(p.dtype == torch.float32 for p in runner.parameters())
    std = runner.model.t_embedder.mlp[0].weight.std().item()
    assert 0.015 < std < 0.025  # N(0, 0.02)
    # deterministic given the seed, different for another seed
    other, same = build_runner("tiny", seed=2), build_runner("tiny", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(runner.state_dict().values(), same.state_dict().values()))
    assert not torch.equal(runner.lang_adaptor[0].weight, other.lang_adaptor[0].weight)
    # zero final layer: the fresh network predicts exactly zero
    x = _inputs(runner.config)
    with torch.no_grad():
        pred = runner.denoise(
            **{k: x[k] for k in ("lang_tokens", "lang_mask", "img_tokens", "state_tokens")},
            noisy_action=torch.randn(B, 64, 128),
            action_mask=x["action_mask"],
            ctrl_freqs=x["ctrl_freqs"],
            timesteps=torch.tensor([3, 900]),
        )
    assert pred.shape == (B, 64, 128) and torch.count_nonzero(pred) == 0


def test_loss_uses_given_noise_and_timesteps_and_trains():
    runner = _trained_like().train()
    x = _inputs(runner.config)
    gt = torch.randn(B, 64, 128) * x["action_mask"]
    noise, steps = torch.randn(B, 64, 128), torch.tensor([10, 700])
    l1 = runner.compute_loss(**x, action_gt=gt, noise=noise, timesteps=steps)
    l2 = runner.compute_loss(**x, action_gt=gt, noise=noise, timesteps=steps)
    l3 = runner.compute_loss(**x, action_gt=gt, noise=noise, timesteps=torch.tensor([11, 700]))
    assert l1.ndim == 0 and torch.isfinite(l1)
    assert torch.equal(l1, l2) and not torch.equal(l1, l3)
    assert torch.equal(runner(**x, action_gt=gt, noise=noise, timesteps=steps), l1)  # forward = compute_loss
    l1.backward()
    grads = {n: p.grad for n, p in runner.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["lang_adaptor.0.weight"].abs().sum() > 0 and grads["img_adaptor.0.weight"].abs().sum() > 0
    # random draws when noise/timesteps are not given
    assert not torch.equal(runner.compute_loss(**x, action_gt=gt), runner.compute_loss(**x, action_gt=gt))


def test_language_mask_is_applied():
    runner = _trained_like()
    x = _inputs(runner.config)
    noise = torch.randn(B, 64, 128)
    a = runner.predict_action(**x, noise=noise)
    x2 = dict(x, lang_tokens=x["lang_tokens"].clone())
    x2["lang_tokens"][1, 5:] += 100.0  # padded tokens of sample 1
    b = runner.predict_action(**x2, noise=noise)
    torch.testing.assert_close(a, b)
    x2["lang_tokens"][1, 0] += 1.0  # a valid token
    assert not torch.allclose(runner.predict_action(**x2, noise=noise)[1], a[1])


def test_condition_reuse_does_not_change_actions():
    runner = _trained_like()
    x = _inputs(runner.config)
    noise = torch.randn(B, 64, 128)
    reused = runner.predict_action(**x, noise=noise, reuse_conditions=True)
    fresh = runner.predict_action(**x, noise=noise, reuse_conditions=False)
    assert reused.shape == (B, 64, 128)
    assert (reused - fresh).abs().max().item() < 1e-5
    assert reused.abs().sum() > 0
    # masked dims are exactly zero; the noise matters
    assert torch.count_nonzero(reused * (1 - x["action_mask"])) == 0
    assert not torch.allclose(runner.predict_action(**x, noise=noise + 1), reused)


def test_concurrent_sampling_is_safe():
    runner = _trained_like()
    x = _inputs(runner.config)
    noises = [torch.randn(B, 64, 128, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    expected = [runner.predict_action(**x, noise=n) for n in noises]
    results: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        results[i] = runner.predict_action(**x, noise=noises[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        torch.testing.assert_close(results[i], expected[i], rtol=0, atol=1e-6)


def test_bf16_autocast_keeps_fp32_parameters():
    runner = _trained_like()
    x = _inputs(runner.config)
    gt = torch.randn(B, 64, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = runner.compute_loss(**x, action_gt=gt)
        actions = runner.predict_action(**x)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert actions.dtype == torch.float32 and torch.isfinite(actions).all()
    assert all(p.dtype == torch.float32 for p in runner.parameters())


def test_wrong_input_shapes_are_user_errors():
    runner = _trained_like()
    x = _inputs(runner.config)
    with pytest.raises(UserError, match="image tokens"):
        runner.predict_action(**dict(x, img_tokens=torch.randn(B, 95, 32)))
    with pytest.raises(UserError, match="language tokens"):
        runner.predict_action(**dict(x, lang_tokens=torch.randn(B, 7, 4096)))
    with pytest.raises(UserError, match="action_mask"):
        runner.predict_action(**dict(x, action_mask=torch.ones(B, 128)))
