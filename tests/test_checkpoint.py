"""Checkpoint folders: strict loading of the released and our format, atomic saving, the verify command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rdt import cli
from rdt.errors import UserError
from rdt.model.checkpoint import load_runner, save_checkpoint
from rdt.model.config import RDTConfig
from rdt.model.runner import build_runner

PARITY = Path(__file__).parent / "data" / "rdt_parity"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_save_and_load_round_trip(tmp_path):
    runner = build_runner("tiny", seed=0)
    ema = {k: v + 1.0 for k, v in runner.state_dict().items()}
    pipeline = {"text_encoder": "tiny", "vision_encoder": "tiny", "step": 7}
    folder = save_checkpoint(tmp_path / "ckpt", runner, runner.config, ema_state_dict=ema, pipeline=pipeline)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "ema", "model.safetensors", "pipeline.json"]
    assert json.loads((folder / "config.json").read_text()) == RDTConfig.preset("tiny").to_flat()
    assert sorted(load_file(str(folder / "model.safetensors"))) == sorted(runner.state_dict())
    loaded, pipe = load_runner(folder)
    assert pipe == pipeline and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), runner.state_dict().values()))
    loaded_ema, _ = load_runner(folder, weights="ema")
    assert torch.equal(loaded_ema.model.x_pos_embed, runner.model.x_pos_embed + 1.0)
    half, _ = load_runner(folder / "model.safetensors", dtype=torch.bfloat16)
    assert half.model.x_pos_embed.dtype == torch.bfloat16
    # overwriting an existing folder replaces it atomically (no leftovers)
    save_checkpoint(folder, runner.state_dict(), runner.config)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
    with pytest.raises(UserError, match="no EMA weights"):
        load_runner(folder, weights="ema")


def test_released_format_loads(tmp_path):
    runner, pipeline = load_runner(PARITY)  # config.json + pytorch_model.bin
    assert pipeline == {} and runner.config.hidden_size == 64
    sd = torch.load(PARITY / "pytorch_model.bin", weights_only=True)
    assert torch.equal(runner.model.blocks[3].cross_attn.kv.weight, sd["model.blocks.3.cross_attn.kv.weight"])
    # DeepSpeed's {"module": state_dict} form next to a config
    shutil.copy(PARITY / "config.json", tmp_path / "config.json")
    torch.save({"module": sd}, tmp_path / "mp_rank_00_model_states.pt")
    ds, _ = load_runner(tmp_path / "mp_rank_00_model_states.pt")
    assert torch.equal(ds.img_adaptor[2].bias, sd["img_adaptor.2.bias"])


def _copy_parity(tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / "parity"
    shutil.copytree(PARITY, folder)
    return folder, torch.load(folder / "pytorch_model.bin", weights_only=True)


def test_key_mismatches_are_listed(tmp_path):
    folder, sd = _copy_parity(tmp_path)
    del sd["model.blocks.2.ffn.fc1.bias"]
    sd["model.blocks.9.norm1.weight"] = torch.ones(64)
    sd["state_adaptor.4.weight"] = torch.zeros(64, 63)
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(UserError) as err:
        load_runner(folder)
    msg = str(err.value)
    for part in (
        "pytorch_model.bin",
        "missing keys: model.blocks.2.ffn.fc1.bias",
        "unexpected keys: model.blocks.9.norm1.weight",
        "state_adaptor.4.weight: file (64, 63)",
    ):
        assert part in msg


def test_missing_files_are_clear(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist.*hf download"):
        load_runner(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json not found"):
        load_runner(tmp_path / "empty")
    shutil.copy(PARITY / "config.json", tmp_path / "empty" / "config.json")
    with pytest.raises(UserError, match="neither model.safetensors nor pytorch_model.bin"):
        load_runner(tmp_path / "empty")
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(
        UserError, match="nor in the local Hugging Face cache.*hf download robotics-diffusion-transformer/rdt-1b"
    ):
        load_runner("robotics-diffusion-transformer/rdt-1b")


def hub_cache(root: Path, repo_id: str = "robotics-diffusion-transformer/rdt-1b") -> Path:
    """A Hugging Face hub cache at ``root`` holding the parity checkpoint as ``repo_id`` (one snapshot, refs/main)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(PARITY, repo / "snapshots" / commit)
    return root


def test_hub_id_found_in_local_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(hub_cache(tmp_path / "hub")))
    runner, _ = load_runner("robotics-diffusion-transformer/rdt-1b")
    assert runner.config.depth == 4


def test_verify_checkpoint_command(tmp_path, capsys):
    assert cli.main(["verify-checkpoint", str(PARITY)]) == 0
    out = capsys.readouterr().out
    assert "parameters      265,344" in out and "parity ok" in out
    assert out.count("relative L2 error") == 3
    # a corrupted weight: loads, but parity fails with a non-zero exit and the errors printed
    folder, sd = _copy_parity(tmp_path)
    sd["model.blocks.1.cross_attn.kv.weight"][0, 0] += 0.5
    torch.save(sd, folder / "pytorch_model.bin")
    assert cli.main(["verify-checkpoint", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "parity FAILED: forward, loss, sample above tolerance 0.0001" in out
    # a truncated file: a load error naming the file (exit 2, no traceback)
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    assert cli.main(["verify-checkpoint", str(folder)]) == 2
    assert "pytorch_model.bin: cannot read weights" in capsys.readouterr().err


def test_verify_checkpoint_help():
    res = subprocess.run(
        [sys.executable, "-m", "rdt", "verify-checkpoint", "--help"], capture_output=True, text=True, check=True
    )
    assert "vectors.safetensors" in res.stdout and "--weights" in res.stdout and "--tolerance" in res.stdout
