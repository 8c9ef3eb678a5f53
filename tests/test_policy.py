"""Policy: built from a saved tiny checkpoint; batched action chunks, masks, determinism, batch == per item."""

import numpy as np
import pytest
import torch

from rdt.encoders import load_text_encoder
from rdt.errors import UserError
from rdt.evaluation.policy import Policy
from rdt.model.checkpoint import save_checkpoint
from rdt.model.config import RDTConfig
from rdt.model.runner import build_runner

PIPELINE = {
    "text_encoder": "tiny",
    "vision_encoder": "tiny",
    "image_size": 32,
    "control_frequency": 20,
    "action_space": "delta_eef",
    "step": 0,
    "run": "test",
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    config = RDTConfig.preset("tiny")
    runner = build_runner(config, seed=0)
    with torch.no_grad():  # the final layer starts at zero; make the outputs depend on the inputs
        for p in runner.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    ema = {k: v + 0.01 for k, v in runner.state_dict().items()}
    return save_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "step-0", runner, config, ema_state_dict=ema, pipeline=PIPELINE
    )


@pytest.fixture(scope="module")
def policy(checkpoint):
    return Policy.from_checkpoint(checkpoint, device="cpu", seed=0)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    b = 3
    lang = load_text_encoder("tiny").encode(["put the bowl on the plate", "open the drawer", "stop"])
    images = rng.integers(0, 256, (b, 2, 3, 32, 32, 3), dtype=np.uint8)
    valid = np.ones((b, 2, 3), bool)
    valid[:, :, 2] = False  # no left wrist camera
    valid[1, 0] = False  # environment 1 is at its first step: no t-1 frame
    states = rng.normal(size=(b, 128)).astype(np.float32)
    mask = np.zeros((b, 128), np.float32)
    mask[:, [0, 1, 2, 3, 4, 5, 6, 10, 30, 31, 32, 33, 34, 35]] = 1
    return lang, images, valid, states, mask


def test_act_shapes_mask_and_settings(policy, inputs, monkeypatch):
    lang, images, valid, states, mask = inputs
    vision_calls, predict_calls = [], []
    hook = policy.vision.model.register_forward_hook(lambda m, i, o: vision_calls.append(i))
    predict = policy.runner.predict_action
    monkeypatch.setattr(policy.runner, "predict_action", lambda *a, **k: predict_calls.append(1) or predict(*a, **k))
    try:
        actions = policy.act(lang, images, valid, states, mask)
    finally:
        hook.remove()
    assert len(vision_calls) == 1 and len(predict_calls) == 1  # one encoder batch and one sampling per act
    assert actions.shape == (3, 64, 128) and actions.dtype == np.float32
    assert np.all(actions[:, :, mask[0] == 0] == 0)
    assert np.all(np.abs(actions[:, :, mask[0] == 1]) > 0) and np.isfinite(actions).all()
    assert (policy.text_encoder, policy.control_frequency, policy.pipeline["weights"]) == ("tiny", 20, "ema")


def test_same_seed_same_actions_and_new_noise_each_call(policy, inputs):
    policy.generator.manual_seed(7)
    first = policy.act(*inputs)
    second = policy.act(*inputs)
    assert not np.allclose(first, second)
    policy.generator.manual_seed(7)
    np.testing.assert_array_equal(policy.act(*inputs), first)


def test_noise_seeds_give_each_row_its_own_noise_whatever_the_batch(policy, inputs):
    lang, images, valid, states, mask = inputs
    batched = policy.act(lang, images, valid, states, mask, noise_seeds=[11, 12, 13])
    alone = policy.act(lang[1:2], images[1:2], valid[1:2], states[1:2], mask[1:2], noise_seeds=[12])
    np.testing.assert_allclose(alone[0], batched[1], atol=1e-5)
    other = policy.act(lang[1:2], images[1:2], valid[1:2], states[1:2], mask[1:2], noise_seeds=[99])
    assert not np.allclose(other[0], batched[1], atol=1e-3)
    with pytest.raises(UserError, match="2 noise seeds for a batch of 3"):
        policy.act(lang, images, valid, states, mask, noise_seeds=[1, 2])


def test_batch_equals_per_item_results(policy, inputs):
    lang, images, valid, states, mask = inputs
    noise = torch.randn(3, 64, 128, generator=torch.Generator().manual_seed(1))
    batched = policy.act(lang, images, valid, states, mask, noise=noise)
    for i in range(3):
        one = policy.act(
            lang[i : i + 1],
            images[i : i + 1],
            valid[i : i + 1],
            states[i : i + 1],
            mask[i : i + 1],
            noise=noise[i : i + 1],
        )
        np.testing.assert_allclose(batched[i], one[0], atol=2e-5, rtol=1e-4)


def test_invalid_frames_are_the_background_and_inputs_matter(checkpoint, policy, inputs):
    lang, images, valid, states, mask = inputs
    noise = torch.randn(3, 64, 128, generator=torch.Generator().manual_seed(2))
    base = policy.act(lang, images, valid, states, mask, noise=noise)
    scrambled = images.copy()
    scrambled[~valid] = 255 - scrambled[~valid]
    np.testing.assert_array_equal(policy.act(lang, scrambled, valid, states, mask, noise=noise), base)
    changed = images.copy()
    changed[:, 1, 0] = 255 - changed[:, 1, 0]  # the current exterior frame is used
    assert not np.allclose(policy.act(lang, changed, valid, states, mask, noise=noise), base)
    model_weights = Policy.from_checkpoint(checkpoint, weights="model", device="cpu")  # not the EMA weights
    assert not np.allclose(model_weights.act(lang, images, valid, states, mask, noise=noise), base)


def test_bfloat16_weights_on_cpu(checkpoint, inputs):
    lang, images, valid, states, mask = inputs
    policy = Policy.from_checkpoint(checkpoint, device="cpu", dtype=torch.bfloat16)
    assert policy.dtype == torch.bfloat16 and policy.vision.dtype == torch.bfloat16
    actions = policy.act(lang, images, valid, states, mask)
    assert actions.shape == (3, 64, 128) and actions.dtype == np.float32 and np.isfinite(actions).all()
    assert np.all(actions[:, :, mask[0] == 0] == 0)


def test_errors_name_the_missing_setting_and_bad_input(tmp_path, checkpoint, policy, inputs):
    config = RDTConfig.preset("tiny")
    bare = save_checkpoint(tmp_path / "elsewhere", build_runner(config, seed=0), config)
    with pytest.raises(UserError, match="pipeline.json does not give 'vision_encoder'.*--vision-encoder"):
        Policy.from_checkpoint(bare, device="cpu")
    p = Policy.from_checkpoint(bare, vision_encoder="tiny", text_encoder="tiny", control_frequency=20, device="cpu")
    assert p.pipeline["weights"] == "model"
    lang, images, valid, states, mask = inputs
    with pytest.raises(UserError, match="'images'.*expected \\(3, 2, 3, \\*, \\*, 3\\) uint8"):
        policy.act(lang, images.astype(np.float32), valid, states, mask)
    with pytest.raises(UserError, match="language embedding 0 has shape \\(4, 8\\)"):
        policy.act([torch.zeros(4, 8)] * 3, images, valid, states, mask)


def test_state_normalisation_from_pipeline_json(checkpoint, inputs):
    """A checkpoint trained with train.state_norm zscore (pipeline.json) sees z-scored states at evaluation: its
    actions equal those of the same weights given the normalised states by hand."""
    from rdt.data.stats import normalize_states

    lang, images, valid, states, mask = inputs
    rng = np.random.default_rng(1)
    stats = {"state_mean": rng.normal(size=128).tolist(), "state_std": rng.uniform(0.001, 2.0, 128).tolist()}
    plain = Policy.from_checkpoint(checkpoint, device="cpu")
    zscored = Policy.from_checkpoint(checkpoint, device="cpu")
    zscored.pipeline.update(state_norm="zscore", dataset_stat=stats)
    seeds = [1, 2, 3]
    by_hand = plain.act(lang, images, valid, normalize_states(states, stats, "zscore"), mask, noise_seeds=seeds)
    np.testing.assert_allclose(zscored.act(lang, images, valid, states, mask, noise_seeds=seeds), by_hand, atol=1e-6)
    assert (
        np.abs(plain.act(lang, images, valid, states, mask, noise_seeds=seeds) - by_hand).max() > 1e-5
    )  # states matter
    zscored.pipeline.pop("dataset_stat")
    with pytest.raises(UserError, match="dataset_stat"):
        zscored.act(lang, images, valid, states, mask, noise_seeds=seeds)
