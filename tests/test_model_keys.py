"""State-dict keys/shapes of the released architectures and the flat config.json form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rdt.errors import UserError
from rdt.model.config import RDTConfig
from rdt.model.runner import RDTRunner

REFERENCE = Path(__file__).parent / "data"
PARITY = REFERENCE / "rdt_parity"


def _reference_shapes(tsv: Path) -> list[tuple[str, tuple[int, ...]]]:
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:] if line.strip()]
    return [(key, tuple(json.loads(shape))) for key, shape, _ in rows]


@pytest.mark.parametrize(
    "preset, tsv, params",
    [
        ("rdt-1b", "rdt1b_state_dict.tsv", 1_228_319_872),
        ("rdt-170m", "rdt170m_state_dict.tsv", 166_229_888),
    ],
)
def test_state_dict_matches_release(preset, tsv, params):
    with torch.device("meta"):
        runner = RDTRunner(RDTConfig.preset(preset))
    got = [(k, tuple(v.shape)) for k, v in runner.state_dict().items()]
    want = _reference_shapes(REFERENCE / tsv)
    assert [k for k, _ in got] == [k for k, _ in want]  # same keys, same order
    assert got == want  # same shapes
    assert runner.num_parameters() == params
    assert not list(runner.buffers())


def test_released_config_json_form():
    flat = RDTConfig.preset("rdt-1b").to_flat()
    assert flat["rdt"] == {"cond_pos_embed_type": "multimodal", "depth": 28, "hidden_size": 2048, "num_heads": 32}
    assert flat["img_pos_embed_config"] == [["image", [2, 3, -729]]]
    assert flat["lang_pos_embed_config"] == [["lang", -1024]]
    assert flat["noise_scheduler"] == {
        "beta_schedule": "squaredcos_cap_v2",
        "clip_sample": False,
        "num_inference_timesteps": 5,
        "num_train_timesteps": 1000,
        "prediction_type": "sample",
        "type": "ddpm",
    }
    # the released rdt-1b and rdt-170m config.json files are 919 bytes (indent=2, sort_keys=True)
    assert len(RDTConfig.preset("rdt-1b").to_json().encode()) == 919
    assert len(RDTConfig.preset("rdt-170m").to_json().encode()) == 919
    assert RDTConfig.from_flat(flat) == RDTConfig.preset("rdt-1b")


def test_parity_config_round_trip():
    flat = json.loads((PARITY / "config.json").read_text())
    cfg = RDTConfig.from_flat(flat)
    assert (cfg.hidden_size, cfg.depth, cfg.num_heads, cfg.img_cond_len) == (64, 4, 4, 24)
    assert cfg.img_pos_embed_config == [("image", (2, 3, -4))]
    assert cfg.to_flat() == flat
    assert cfg.rms_norm == "unbiased_var"


def test_tiny_preset():
    c = RDTConfig.preset("tiny")
    assert (c.hidden_size, c.depth, c.num_heads, c.lang_token_dim, c.img_token_dim) == (128, 4, 4, 32, 32)
    assert (c.max_lang_cond_len, c.img_cond_len, c.action_dim, c.pred_horizon, c.state_token_dim) == (
        256,
        96,
        128,
        64,
        128,
    )
    assert c.img_pos_embed_config == [("image", (2, 3, -16))] and c.lang_pos_embed_config == [("lang", -256)]
    big = RDTConfig.preset("rdt-1b")
    assert (c.lang_adaptor, c.img_adaptor, c.state_adaptor, c.noise_scheduler) == (
        big.lang_adaptor,
        big.img_adaptor,
        big.state_adaptor,
        big.noise_scheduler,
    )


def test_rms_norm_option_is_stored_only_when_not_default():
    cfg = RDTConfig.preset("tiny").replace(rms_norm="mean_square")
    flat = cfg.to_flat()
    assert flat["rdt"]["rms_norm"] == "mean_square"
    assert RDTConfig.from_flat(flat).rms_norm == "mean_square"
    assert "rms_norm" not in RDTConfig.preset("tiny").to_flat()["rdt"]


def test_bad_configs_are_user_errors():
    flat = RDTConfig.preset("tiny").to_flat()
    del flat["img_token_dim"]
    with pytest.raises(UserError, match="img_token_dim.*my.json|my.json.*img_token_dim"):
        RDTConfig.from_flat(flat, source="my.json")
    flat = RDTConfig.preset("tiny").to_flat()
    flat["img_cond_len"] = 95
    with pytest.raises(UserError, match="img_cond_len"):
        RDTConfig.from_flat(flat)
    with pytest.raises(UserError, match="rms_norm"):
        RDTConfig.preset("tiny").replace(rms_norm="layernorm")
    with pytest.raises(UserError, match="unknown model preset"):
        RDTConfig.preset("rdt-7b")
