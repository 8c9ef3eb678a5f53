"""Language embeddings: `python -m rdt encode` from each source, the file format, lookups and their errors."""

import json

import h5py
import pytest
import torch
from safetensors import safe_open

from rdt.cli import main as cli
from rdt.data import TRAIN_FORMAT
from rdt.encoders import load_text_encoder
from rdt.errors import UserError
from rdt.lang import LanguageTable
from rdt.libero.suites import select_tasks


@pytest.fixture(scope="module")
def tiny():
    return load_text_encoder("tiny")


def _training_file(path, instructions):
    """The part of a training HDF5 (docs/formats.md §2) that `encode` reads: /episodes/*.attrs['instruction']."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "rdt-libero-train/1"
        for i, text in enumerate(instructions):
            f.create_group(f"episodes/{i:06d}").attrs["instruction"] = text
    return path


def test_encode_training_file_once_per_unique_instruction(tmp_path, tiny, capsys):
    texts = ["put the bowl on the plate", "open the drawer", "put the bowl on the plate", "open the drawer", "stop"]
    data = _training_file(tmp_path / "train.h5", texts)
    out = tmp_path / "lang" / "lang.safetensors"
    assert cli(["encode", "--data", str(data), "--text-encoder", "tiny", "--out", str(out), "--batch-size", "2"]) == 0
    assert "encoded 4 embeddings (5 instructions given" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["lang.safetensors"]  # no temporary file left

    with safe_open(str(out), framework="pt") as f:
        meta, keys = f.metadata(), sorted(f.keys())
    assert keys == ["emb_0", "emb_1", "emb_2", "emb_3"]
    assert json.loads(meta["instructions"]) == ["put the bowl on the plate", "open the drawer", "stop", ""]
    assert (meta["encoder"], meta["max_length"], meta["hidden_size"]) == ("tiny", "256", "32")

    table = LanguageTable.load(out)
    assert (table.encoder, table.max_length, table.hidden_size, len(table)) == ("tiny", 256, 32, 4)
    assert table.get("").shape == (1, 32)  # RDT's empty_lang_embed: just </s>
    direct = tiny.encode(["open the drawer"])[0]
    got = table.get("open the drawer")
    assert got.shape == (len("open the drawer") + 1, 32) and got.dtype == torch.float32
    torch.testing.assert_close(got, direct, atol=1e-5, rtol=1e-5)
    table.check_encoder("tiny")


def test_encode_from_text_file_and_libero_tasks(tmp_path):
    lines = tmp_path / "instructions.txt"
    lines.write_text("pick up the ketchup\n\n  pick up the ketchup  \nturn on the stove\n")
    out = tmp_path / "lang.safetensors"
    argv = [
        "encode",
        "--instructions",
        str(lines),
        "--instructions-from-tasks",
        "libero_10",
        "0",
        "1",
        "--instructions-from-tasks",
        "libero_goal",
        "3",
        "--text-encoder",
        "tiny",
        "--out",
        str(out),
    ]
    assert cli(argv) == 0
    expected = ["pick up the ketchup", "turn on the stove"] + [
        t.language for t in select_tasks("libero_10", ["0", "1"]) + select_tasks("libero_goal", ["3"])
    ]
    table = LanguageTable.load(out)
    assert table.instructions == list(dict.fromkeys(expected)) + [""]
    assert all(table.get(t).shape[1] == 32 for t in expected)


def test_lookup_errors_name_the_instruction_file_and_encoders(tmp_path):
    out = tmp_path / "lang.safetensors"
    assert (
        cli(["encode", "--instructions-from-tasks", "libero_spatial", "--text-encoder", "tiny", "--out", str(out)]) == 0
    )
    table = LanguageTable.load(out)
    assert len(table) == 11
    with pytest.raises(UserError) as e:
        table.get("pick up the black bowl next to the plate and place it on the moon")
    msg = str(e.value)
    assert "place it on the moon" in msg and str(out) in msg and "pick up the black bowl" in msg
    with pytest.raises(UserError) as e:
        table.check_encoder("google/t5-v1_1-xxl")
    assert "'tiny'" in str(e.value) and "'google/t5-v1_1-xxl'" in str(e.value) and str(out) in str(e.value)


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    out = tmp_path / "lang.safetensors"
    assert cli(["encode", "--text-encoder", "tiny", "--out", str(out)]) == 2
    assert "at least one instruction source" in capsys.readouterr().err
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_group("episodes/000000")
    assert cli(["encode", "--data", str(tmp_path / "bad.h5"), "--text-encoder", "tiny", "--out", str(out)]) == 2
    assert "format='rdt-libero-train/1'" in capsys.readouterr().err  # not a converted training file
    with h5py.File(tmp_path / "bad.h5", "a") as f:
        f.attrs["format"] = TRAIN_FORMAT
    assert cli(["encode", "--data", str(tmp_path / "bad.h5"), "--text-encoder", "tiny", "--out", str(out)]) == 2
    assert "/episodes/000000 has no 'instruction'" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(UserError, match="not found"):
        LanguageTable.load(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="junk.safetensors"):
        LanguageTable.load(tmp_path / "junk.safetensors")
