"""The training Dataset: shapes, masks, history, padding, condition masking, noise, augmentation, loading."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from official_layout import write_demo_file
from rdt.data import augment
from rdt.data.dataset import BACKGROUND, LiberoDataset, collate, split_episodes, transition_weights
from rdt.data.stats import compute_stats
from rdt.encoders import ImagePreprocessor
from rdt.errors import UserError
from rdt.lang import LanguageTable
from rdt.libero import mapping
from rdt.libero.convert import convert

# demo lengths; conversion gives one step fewer: episodes of 70, 20, 12 | 15, 30 steps
TASKS = {"KITCHEN_SCENE7_open_the_microwave": [71, 21, 13], "KITCHEN_SCENE7_put_the_white_bowl_on_the_plate": [16, 31]}
SIZE = 16
PLAIN = dict(cond_mask_prob=0.0, state_noise_snr=None, image_aug=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    for k, (task, steps) in enumerate(TASKS.items()):
        write_demo_file(root / f"{task}_demo.hdf5", task, None, steps, seed=k, image_size=SIZE)
    data = root / "data.h5"
    convert([str(root)], data)
    stats = compute_stats(data)["libero"]
    # a language table in the docs/formats.md §4 layout, read back by the real LanguageTable
    instructions = ["", "open the microwave", "put the white bowl on the plate"]
    gen = torch.Generator().manual_seed(0)
    tensors = {f"emb_{i}": torch.randn(1 + 3 * i, 8, generator=gen) for i in range(len(instructions))}
    lang = root / "lang.safetensors"
    save_file(
        tensors,
        str(lang),
        metadata={"encoder": "tiny", "max_length": "32", "hidden_size": "8", "instructions": json.dumps(instructions)},
    )
    return data, stats, LanguageTable.load(lang)


def _episode(data, e):
    with h5py.File(data, "r") as f:
        g = f["episodes"][f"{e:06d}"]
        return {k: g[k][()] for k in ("state", "action")} | {
            s: g[f"images/{s}"][()] for s in ("exterior", "right_wrist")
        }


def test_shapes_history_and_padding(files):
    data, stats, lang = files
    ds = LiberoDataset(data, lang, stats, **PLAIN)
    assert len(ds) == 70 + 20 + 12 + 15 + 30
    ep = _episode(data, 0)
    s0 = ds[0]
    assert s0["state"].shape == (1, 128) and s0["state"].dtype == torch.float32
    assert s0["actions"].shape == (64, 128) and s0["state_mask"].shape == (128,)
    assert s0["images"].shape == (6, SIZE, SIZE, 3) and s0["images"].dtype == torch.uint8
    np.testing.assert_array_equal(s0["state_mask"], mapping.MASK)
    np.testing.assert_array_equal(s0["state"][0], ep["state"][0])
    # history mask at the episode start; left wrist always invalid
    assert s0["image_valid"].tolist() == [False, False, False, True, True, False]
    assert (s0["images"][[0, 1, 2, 5]] == torch.tensor(BACKGROUND, dtype=torch.uint8)).all()
    np.testing.assert_array_equal(s0["images"][3], ep["exterior"][0])
    s = ds[40]
    assert (s["episode"], s["step"]) == (0, 40)
    assert s["image_valid"].tolist() == [True, True, False, True, True, False]
    for slot, i in (("exterior", 0), ("right_wrist", 1)):
        np.testing.assert_array_equal(s["images"][i], ep[slot][39])
        np.testing.assert_array_equal(s["images"][i + 3], ep[slot][40])
    # the chunk runs past the episode end (70 steps): padded by repeating the last action
    np.testing.assert_array_equal(s["actions"][:30], ep["action"][40:70])
    np.testing.assert_array_equal(s["actions"][30:], np.broadcast_to(ep["action"][69], (34, 128)))
    assert s["ctrl_freq"] == 20 and s["instruction"] == "open the microwave"
    torch.testing.assert_close(s["lang"], lang.get("open the microwave"))
    last = ds[69]
    np.testing.assert_array_equal(last["actions"], np.broadcast_to(ep["action"][69], (64, 128)))
    assert ds[70]["episode"] == 1 and ds[70]["step"] == 0


def test_condition_masking(files):
    data, stats, lang = files
    ds = LiberoDataset(data, lang, stats, cond_mask_prob=1.0, state_noise_snr=None, image_aug=False)
    s = ds[40]
    assert s["ctrl_freq"] == 0 and s["instruction"] == ""
    np.testing.assert_allclose(s["state"][0], np.asarray(stats["state_mean"], np.float32))
    assert not s["state_mask"].any() and not s["image_valid"].any()
    assert (s["images"] == torch.tensor(BACKGROUND, dtype=torch.uint8)).all()
    torch.testing.assert_close(s["lang"], lang.get(""))
    assert s["actions"].abs().sum() > 0  # the targets are never masked
    # probability 0.5: each condition masked independently about half of the time
    torch.manual_seed(0)
    half = LiberoDataset(data, lang, stats, cond_mask_prob=0.5, state_noise_snr=None, image_aug=False)
    draws = [half[40] for _ in range(300)]
    rate = {
        "freq": np.mean([d["ctrl_freq"] == 0 for d in draws]),
        "mask": np.mean([not d["state_mask"].any() for d in draws]),
        "image0": np.mean([not d["image_valid"][0] for d in draws]),
        "lang": np.mean([d["instruction"] == "" for d in draws]),
    }
    assert all(0.4 < r < 0.6 for r in rate.values()), rate
    assert 0.15 < np.mean([d["instruction"] == "" and d["ctrl_freq"] == 0 for d in draws]) < 0.35
    with pytest.raises(UserError, match="needs the dataset statistics"):
        LiberoDataset(data, lang, None)


def test_state_noise_magnitude(files):
    data, stats, _ = files
    torch.manual_seed(1)
    ds = LiberoDataset(data, None, stats, cond_mask_prob=0.0, state_noise_snr=40.0, image_aug=False)
    clean = _episode(data, 0)["state"]
    noise = np.stack([ds[10]["state"][0].numpy() - clean[10] for _ in range(400)])  # (400,128)
    used = mapping.MASK > 0
    expected = clean.std(0) / 100.0  # 40 dB: std / 10^2
    measured = noise.std(0)
    np.testing.assert_allclose(measured[used], expected[used], rtol=0.2)
    assert (noise[:, ~used] == 0).all()


def test_augmentation_changes_pixels_not_layout(files):
    data, stats, _ = files
    rng = np.random.default_rng(0)
    img = _episode(data, 0)["exterior"][5]
    for fn in (augment.color_jitter, augment.corrupt):
        out = fn(img, rng)
        assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    assert augment.augment(img, rng, prob=0.0) is img
    changed = [not np.array_equal(augment.augment(img, rng), img) for _ in range(100)]
    assert 0.35 < np.mean(changed) < 0.65  # applied with probability 0.5
    torch.manual_seed(2)
    ds = LiberoDataset(data, None, stats, cond_mask_prob=0.0, state_noise_snr=None, image_aug=True)
    plain = LiberoDataset(data, None, stats, **PLAIN)[40]["images"]
    draws = [ds[40]["images"] for _ in range(20)]
    assert all(d.shape == plain.shape and d.dtype == torch.uint8 for d in draws)
    assert any(not torch.equal(d[3], plain[3]) for d in draws)
    assert all(torch.equal(d[2], plain[2]) for d in draws)  # invalid slots stay background


def test_image_transform_hook_and_collate(files):
    data, stats, lang = files
    ds = LiberoDataset(data, lang, stats, **PLAIN, image_transform=ImagePreprocessor(24))
    samples = [ds[0], ds[75], ds[110]]
    assert samples[0]["images"].shape == (6, 3, 24, 24)
    batch = collate(samples)
    assert batch["images"].shape == (3, 6, 3, 24, 24) and batch["state"].shape == (3, 1, 128)
    assert batch["actions"].shape == (3, 64, 128) and batch["image_valid"].shape == (3, 6)
    lengths = [lang.get(s["instruction"]).shape[0] for s in samples]
    assert batch["lang"].shape == (3, max(lengths), 8) and lengths[0] != lengths[-1]
    assert batch["lang_mask"].sum(1).tolist() == lengths
    for i, n in enumerate(lengths):
        assert (batch["lang"][i, n:] == 0).all()
        torch.testing.assert_close(batch["lang"][i, :n], lang.get(samples[i]["instruction"]))
    assert batch["ctrl_freq"].tolist() == [20, 20, 20] and batch["episode"].tolist() == [0, 1, 3]


def test_dataloader_with_two_workers(files):
    data, stats, lang = files
    ds = LiberoDataset(data, lang, stats, **PLAIN)
    ds[3]  # the parent process opened the file before forking
    loader = torch.utils.data.DataLoader(
        ds, batch_size=4, num_workers=2, collate_fn=collate, sampler=list(range(60, 76))
    )
    batches = list(loader)
    assert len(batches) == 4
    got = torch.cat([b["images"] for b in batches])
    expected = torch.stack([ds[i]["images"] for i in range(60, 76)])
    assert torch.equal(got, expected)
    assert torch.cat([b["step"] for b in batches]).tolist() == list(range(60, 70)) + list(range(6))


def test_transition_oversampling(files):
    data, stats, _ = files
    ds = LiberoDataset(data, None, stats, **PLAIN)
    w = transition_weights(ds, factor=4.0, window=2)
    grip = _episode(data, 0)["action"][:, 10]  # right_gripper_open: closed in the middle third
    changes = np.flatnonzero(np.abs(np.diff(grip)) > 0.5) + 1
    assert changes.tolist() == [71 // 3 - 1, 2 * 71 // 3 - 1]  # demo action j+1 is training action j
    near = np.zeros(70, bool)
    for c in changes:
        near[c - 2 : c + 3] = True
    np.testing.assert_array_equal(w[:70], np.where(near, 4.0, 1.0))
    with pytest.raises(UserError):
        transition_weights(ds, factor=0.5)

    # the trainer draws with these weights (PositionedSamples): transition steps come up in proportion to their weight
    from rdt.training.sampling import PositionedSamples

    samples = PositionedSamples(ds, 0, 1000, (64, 128), w)
    drawn = np.array([samples.index_of(p) for p in range(4000)])
    share = np.isin(drawn, np.flatnonzero(w > 1)).mean()
    assert share == pytest.approx(w[w > 1].sum() / w.sum(), abs=0.03) and share > 1.5 * (w > 1).mean()


def test_heldout_split(files):
    data, stats, _ = files
    train, held = split_episodes(data, 1)
    assert held == [2, 4] and train == [0, 1, 3]  # the last episode of each task
    assert split_episodes(data, 5) == ([0, 3], [1, 2, 4])  # every task keeps one training episode
    assert split_episodes(data, 0) == ([0, 1, 2, 3, 4], [])
    ds = LiberoDataset(data, None, stats, episodes=held, **PLAIN)
    assert len(ds) == 12 + 30 and ds[0]["episode"] == 2 and ds[12]["episode"] == 4
    with pytest.raises(UserError, match="out of range"):
        LiberoDataset(data, None, stats, episodes=[9], **PLAIN)


# ------------------------------------------------------------------------------------------ precomputed features


def test_cached_features_equal_the_encoder_on_the_same_frames(files):
    """FrameFeatures.views(frame ids) = VisionEncoder.encode_views(frames) for the same samples: history frames,
    the absent left wrist, the t-1 frame at t = 0 and condition-masked views (background) included."""
    from rdt.data.features import FrameFeatures
    from rdt.encoders import load_vision_encoder

    data, stats, lang = files
    vision = load_vision_encoder("tiny")
    opts = dict(cond_mask_prob=0.3, state_noise_snr=None, image_aug=False)
    pixels = LiberoDataset(data, lang, stats, image_transform=vision.preprocessor, **opts)
    ids = LiberoDataset(data, lang, stats, frame_ids=True, **opts)
    features = FrameFeatures.build(ids, vision, batch_size=7)
    indices = [0, 1, 40, 69, 70, 71, len(ids) - 1]
    torch.manual_seed(5)
    a = collate([pixels[i] for i in indices])
    torch.manual_seed(5)
    b = collate([ids[i] for i in indices])
    assert "images" not in b and b["frame_ids"].shape == (len(indices), 6)
    assert torch.equal(a["image_valid"], b["image_valid"]) and not b["image_valid"].all()
    assert ((b["frame_ids"] >= 0) == b["image_valid"]).all()
    expected = vision.encode_views(a["images"], a["image_valid"])
    torch.testing.assert_close(features.views(b["frame_ids"], b["image_valid"]), expected, rtol=1e-5, atol=1e-6)


def test_cached_features_refuse_augmentation(files):
    data, stats, lang = files
    with pytest.raises(UserError, match="image_aug"):
        LiberoDataset(data, lang, stats, frame_ids=True, cond_mask_prob=0.0, state_noise_snr=None, image_aug=True)


def test_blur_sizes_scale_with_the_frame_width():
    """RDT's blur kernels are pixels of 640-wide frames: a 128 px frame gets them scaled by 0.2 (a motion blur of
    at most 7 px), a 640 px frame the original sizes (up to 36 px)."""
    assert augment.scaled_kernel(36, 640) == 36 and augment.scaled_kernel(36, 128) == 7
    assert augment.scaled_kernel(3, 128) == 1 and augment.scaled_kernel(11, 128, odd=True) == 3

    def widest_spread(width: int, draws: int = 300) -> int:
        """Largest extent (pixels) over which a blur spreads one bright pixel, over many random blurs."""
        img = np.zeros((width, width, 3), dtype=np.float32)
        img[width // 2, width // 2] = 255.0
        rng = np.random.default_rng(0)
        spread = 0
        for _ in range(draws):
            rows, cols = np.nonzero(augment._blur(img, rng)[..., 0] > 1e-3)
            if not len(rows):  # a median blur removes a single bright pixel
                continue
            spread = max(spread, rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
        return spread

    assert widest_spread(128) <= 8
    assert widest_spread(640) >= 25


def test_state_normalisation_uses_the_dataset_statistics(files):
    """train.state_norm zscore: every sample's state is (x - state_mean) / max(state_std, 0.01) on the used slots and
    0 elsewhere; the policy applies the same function (tests/test_policy.py)."""
    from rdt.data.stats import STATE_STD_FLOOR, normalize_states

    data, stats, _ = files
    raw = LiberoDataset(data, None, stats, **PLAIN)
    norm = LiberoDataset(data, None, stats, **PLAIN, state_norm="zscore")
    used = mapping.MASK > 0
    states = np.stack([norm[i]["state"][0].numpy() for i in range(len(norm))])
    plain = np.stack([raw[i]["state"][0].numpy() for i in range(len(raw))])
    std = np.maximum(np.asarray(stats["state_std"]), STATE_STD_FLOOR)
    np.testing.assert_allclose(states[:, used], ((plain - np.asarray(stats["state_mean"])) / std)[:, used], atol=1e-5)
    assert (states[:, ~used] == 0).all()
    varying = used & (np.asarray(stats["state_std"]) > STATE_STD_FLOOR)
    np.testing.assert_allclose(states[:, varying].mean(0), 0.0, atol=1e-4)  # z-scored over the whole dataset
    np.testing.assert_array_equal(normalize_states(plain, stats, "none"), plain)
    with pytest.raises(UserError, match="state_norm"):
        LiberoDataset(data, None, None, **PLAIN, state_norm="zscore")
