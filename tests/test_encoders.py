"""Encoders: tiny models (determinism, shapes), RDT's image preprocessing, loading from folders, missing models."""

import json
import pickle
import time

import numpy as np
import pytest
import torch
from PIL import Image

from rdt.encoders import SIGLIP_SO400M, T5_XXL, ImagePreprocessor, load_text_encoder, load_vision_encoder
from rdt.errors import UserError

BG = 127 / 255 * 2 - 1  # background value after normalisation (mean colour 127, mean = std = 0.5)


@pytest.fixture(scope="module")
def text():
    return load_text_encoder("tiny")


@pytest.fixture(scope="module")
def vision():
    return load_vision_encoder("tiny")


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------------ text
def test_tiny_text_encoder_is_deterministic_and_leaves_global_rng_alone(text):
    rng_before = torch.random.get_rng_state()
    again = load_text_encoder("tiny")
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert _same_weights(text.model, again.model)
    texts = ["put the bowl on the plate", "open the drawer"]
    for x, y in zip(text.encode(texts), again.encode(texts)):
        assert torch.equal(x, y)
    other = load_text_encoder("tiny", seed=1)
    assert not torch.equal(other.encode(texts[:1])[0], text.encode(texts[:1])[0])
    # weights come from a local generator in parameter-name order: the same on every machine
    name, first = sorted(text.model.named_parameters())[0]
    expected = torch.randn(first.shape, generator=torch.Generator().manual_seed(0)) * 0.02
    assert torch.equal(first.detach(), expected), name


def test_tiny_text_encoder_shapes_eos_and_truncation(text):
    assert (text.name, text.hidden_size, text.max_length) == ("tiny", 32, 256)
    out = text.encode(["abc", "", "x" * 1000])
    # byte tokens + </s>; the empty string is just </s>; long input truncated at max_length (incl. </s>)
    assert [tuple(o.shape) for o in out] == [(4, 32), (1, 32), (256, 32)]
    assert all(o.dtype == torch.float32 and torch.isfinite(o).all() for o in out)


def test_text_encoding_does_not_depend_on_batch_padding(text):
    texts = ["pick up the black bowl", "stop", "turn on the stove and put the moka pot on it"]
    together = text.encode(texts, batch_size=3)
    alone = [text.encode([t], batch_size=1)[0] for t in texts]
    for a, b in zip(together, alone):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ preprocessing
def test_pad_to_square_centres_wide_and_tall_images_on_the_mean_colour():
    pre = ImagePreprocessor(64)
    wide = np.full((40, 64, 3), 255, np.uint8)  # pad rows: top (64-40)//2 = 12, bottom 12
    x = pre([wide])[0]
    assert x.shape == (3, 64, 64)
    assert torch.allclose(x[:, :12], torch.tensor(BG)) and torch.allclose(x[:, 52:], torch.tensor(BG))
    assert torch.allclose(x[:, 12:52], torch.tensor(1.0))
    tall = np.zeros((64, 41, 3), np.uint8)  # pad cols: left (64-41)//2 = 11, right 12
    y = pre([tall])[0]
    assert torch.allclose(y[:, :, :11], torch.tensor(BG)) and torch.allclose(y[:, :, 52:], torch.tensor(BG))
    assert torch.allclose(y[:, :, 11:52], torch.tensor(-1.0))


def test_none_is_the_background_image_and_values_are_in_range():
    pre = ImagePreprocessor(64)
    imgs = [np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8), None]
    x = pre(imgs)
    assert x.shape == (2, 3, 64, 64) and x.dtype == torch.float32
    assert torch.allclose(x[1], torch.full((3, 64, 64), BG))
    assert torch.equal(x[1], pre.background())
    assert pre.background_color == (127, 127, 127)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x[0].std() > 0.1


@pytest.mark.parametrize("size", [100, 37, 128])  # downscale (antialiased) and upscale
def test_resize_matches_pil_bicubic(size):
    img = np.random.default_rng(size).integers(0, 256, (size, size, 3), dtype=np.uint8)
    img[: size // 2] //= 3  # some structure besides noise
    ours = ImagePreprocessor(64)([img])[0]
    ref = np.asarray(Image.fromarray(img).resize((64, 64), Image.Resampling.BICUBIC), dtype=np.float32)
    ref = torch.from_numpy(ref).permute(2, 0, 1) / 255.0 * 2 - 1
    diff = (ours - ref).abs()
    assert diff.max() <= 1.01 * 2 / 255  # at most one uint8 level (PIL's fixed-point rounding)
    assert diff.mean() < 0.01 * 2 / 255


def test_preprocessing_batches_equal_single_images_and_is_picklable():
    pre = ImagePreprocessor(64)
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (4, 48, 80, 3), dtype=np.uint8)
    as_array = pre(batch)
    as_list = pre([batch[0], None, batch[1], np.ascontiguousarray(batch[2, :, :48]), batch[3]])
    torch.testing.assert_close(as_array[[0, 1, 3]], as_list[[0, 2, 4]])
    clone = pickle.loads(pickle.dumps(pre))
    assert torch.equal(clone(batch), as_array)
    with pytest.raises(UserError, match="uint8"):
        pre([batch[0].astype(np.float32)])


# ------------------------------------------------------------------------------------------------ vision
def test_tiny_vision_encoder_is_deterministic_with_rdt_shapes(vision):
    again = load_vision_encoder("tiny")
    assert _same_weights(vision.model, again.model)
    assert (vision.image_size, vision.num_patches, vision.hidden_size) == (64, 16, 32)
    pixels = vision.preprocess([np.random.default_rng(2).integers(0, 256, (128, 128, 3), dtype=np.uint8), None])
    feats = vision.encode(pixels)
    assert feats.shape == (2, 16, 32)
    assert torch.equal(feats, again.encode(pixels))
    assert not torch.allclose(feats[0], feats[1])


def test_encode_views_order_and_background(vision):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 6, 32, 32, 3), dtype=np.uint8)
    valid = np.ones((2, 6), bool)
    valid[:, 2] = valid[:, 5] = False  # left wrist absent
    valid[1, :3] = False  # sample 1: no t-1 frame
    tokens = vision.encode_views(images, valid)
    assert tokens.shape == (2, 6 * 16, 32)
    per_view = tokens.reshape(2, 6, 16, 32)
    background = vision.encode(vision.preprocessor.background()[None])[0]
    for b in range(2):
        for v in range(6):
            want = vision.encode(vision.preprocess([images[b, v]]))[0] if valid[b, v] else background
            torch.testing.assert_close(per_view[b, v], want, atol=1e-5, rtol=1e-5)
    # invalid views are ignored whatever they hold; preprocessed input gives the same tokens
    scrambled = images.copy()
    scrambled[~valid] = 0
    torch.testing.assert_close(vision.encode_views(scrambled, valid), tokens)
    pixels = vision.preprocess(images.reshape(12, 32, 32, 3)).reshape(2, 6, 3, 64, 64)
    torch.testing.assert_close(vision.encode_views(pixels, torch.from_numpy(valid)), tokens, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ loading
def test_encoders_load_from_a_local_folder(tmp_path, text, vision):
    text.model.save_pretrained(tmp_path / "t5")
    text.tokenizer.save_pretrained(tmp_path / "t5")
    loaded = load_text_encoder(str(tmp_path / "t5"))
    assert loaded.name == str(tmp_path / "t5") and loaded.max_length == 1024
    torch.testing.assert_close(loaded.encode(["open the top drawer"])[0], text.encode(["open the top drawer"])[0])

    vision.model.save_pretrained(tmp_path / "siglip")
    (tmp_path / "siglip" / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "size": {"height": 64, "width": 64}})
    )
    loaded_v = load_vision_encoder(str(tmp_path / "siglip"))
    assert (loaded_v.image_size, loaded_v.num_patches, loaded_v.preprocessor.mean) == (64, 16, (0.5, 0.5, 0.5))
    pixels = vision.preprocess([None])
    torch.testing.assert_close(loaded_v.encode(pixels), vision.encode(pixels))


@pytest.mark.parametrize("loader,name", [(load_text_encoder, T5_XXL), (load_vision_encoder, SIGLIP_SO400M)])
def test_missing_real_model_is_one_clear_error_without_network(loader, name, tmp_path):
    start = time.monotonic()
    with pytest.raises(UserError) as e:
        loader(name)
    assert time.monotonic() - start < 10
    assert name in str(e.value) and f"hf download {name}" in str(e.value)
    with pytest.raises(UserError, match="does not exist"):
        loader(str(tmp_path / "no-such-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="could not be loaded"):
        loader(str(tmp_path / "empty"))


def test_released_dual_tower_checkpoints_load_quietly_and_a_missing_weight_is_an_error(tmp_path, capfd):
    """A full SiglipModel (text and vision towers, as google/siglip-so400m-patch14-384 ships) loads as the vision
    tower without transformers' UNEXPECTED load report in the log; a vision weight missing from the file is an error
    naming it (issue 21: the report listed the text tower in every train and evaluate log)."""
    from safetensors.torch import load_file, save_file
    from transformers import SiglipConfig, SiglipModel

    cfg = SiglipConfig(
        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        vision_config=dict(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64),
    )  # fmt: skip
    SiglipModel(cfg).save_pretrained(tmp_path / "full")
    capfd.readouterr()
    loaded = load_vision_encoder(str(tmp_path / "full"))
    assert loaded.image_size == 64
    out = capfd.readouterr()
    assert "UNEXPECTED" not in out.out + out.err and "text_model" not in out.out + out.err
    weights = tmp_path / "full" / "model.safetensors"
    tensors = load_file(weights)
    dropped = next(k for k in tensors if "vision_model" in k and "layernorm" in k)
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(weights), metadata={"format": "pt"})
    with pytest.raises(UserError, match="lacks 1 weight"):
        load_vision_encoder(str(tmp_path / "full"))
