"""Numerical parity with the original RDT code on the recorded vectors (reference rdt_parity/), float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rdt.model.checkpoint import load_runner
from rdt.model.config import RDTConfig
from rdt.model.posemb import multimodal_pos_embed, timestep_sinusoid
from rdt.model.runner import RDTRunner
from rdt.model.verify import load_vectors, parity_errors

PARITY = Path(__file__).parent / "data" / "rdt_parity"
TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vectors():
    return load_vectors(PARITY / "vectors.safetensors")


def test_forward_loss_and_sampling_match_original(vectors):
    runner, _ = load_runner(PARITY)
    errors = parity_errors(runner, vectors)
    assert errors["forward"] < TOL, errors
    assert errors["loss"] < TOL, errors
    assert errors["sample"] < TOL, errors


def test_mean_square_norm_does_not_match(vectors):
    runner, _ = load_runner(PARITY)
    state = runner.state_dict()
    other = RDTRunner(runner.config.replace(rms_norm="mean_square")).eval()
    other.load_state_dict(state, strict=True)
    errors = parity_errors(other, vectors)
    assert errors["forward"] > 100 * TOL, errors
    assert errors["sample"] > 100 * TOL, errors


def test_sampling_timesteps_are_the_original_ones():
    runner = RDTRunner(RDTConfig.preset("tiny"))
    assert runner.sample_scheduler().timesteps.tolist() == [999, 799, 599, 400, 200]
    assert runner.sample_scheduler() is not runner.sample_scheduler()  # one scheduler per call


def test_positional_table_initialisation():
    d = 64
    lang = multimodal_pos_embed(d, [("lang", -32)], embed_modality=False)
    assert lang.shape == (32, d)
    assert np.unique(lang, axis=0).shape[0] == 1  # no position information
    np.testing.assert_allclose(lang[0], np.r_[np.zeros(d // 2), np.ones(d // 2)])  # [sin(0), cos(0)]
    img = multimodal_pos_embed(d, [("image", (2, 3, -4))], embed_modality=False)
    assert img.shape == (24, d) and np.unique(img, axis=0).shape[0] == 6
    # history-major, then camera, then patch: rows 0..3 = (t-1, ext), rows 4..7 = (t-1, right), rows 12.. = t
    np.testing.assert_allclose(img[0], img[3])
    assert not np.allclose(img[0], img[4])
    np.testing.assert_allclose(img[0, d // 2 :], img[12, d // 2 :])  # same camera: same second half
    np.testing.assert_allclose(img[4, : d // 2], img[0, : d // 2])  # same history: same first half
    x = multimodal_pos_embed(d, [("timestep", 1), ("ctrl_freq", 1), ("state", 1), ("action", 64)])
    assert x.shape == (67, d)
    np.testing.assert_allclose(x[0, d // 2 :], x[2, d // 2 :])  # position 0 in every modality
    np.testing.assert_allclose(x[3, : d // 2], x[66, : d // 2])  # all actions share the modality code
    np.testing.assert_allclose(x[4, d // 2 : d // 2 + 16], np.sin(1.0 / 10000 ** (np.arange(16) / 16)))


def test_timestep_sinusoid_is_cos_first():
    emb = timestep_sinusoid(torch.tensor([0.0, 25.0]))
    assert emb.shape == (2, 256)
    assert torch.equal(emb[0, :128], torch.ones(128)) and torch.equal(emb[0, 128:], torch.zeros(128))
    assert torch.isclose(emb[1, 0], torch.cos(torch.tensor(25.0))) and torch.isclose(
        emb[1, 128], torch.sin(torch.tensor(25.0))
    )
