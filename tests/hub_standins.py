"""Stand-ins for the released models in a Hugging Face hub cache, for the paper-path rehearsal (test_rehearsal.py).

``write_hub_cache(root)`` lays out ``root/hub`` as huggingface_hub does (``models--ORG--NAME/{refs/main, blobs/<hash>,
snapshots/<commit>/<file> -> ../../blobs/<hash>}``; LFS files named by their sha256, small files by their git blob
sha1), with the released repositories' file names and config files, so that every loader of the pipeline finds them
with ``HF_HOME=root HF_HUB_CACHE=root/hub HF_HUB_OFFLINE=1`` exactly where it finds the real ones:

- ``robotics-diffusion-transformer/rdt-170m``: the released form, not reduced: the flat ``config.json`` and a
  ``torch.save``d all-bf16 ``pytorch_model.bin`` whose keys and shapes are those of reference/rdt170m_state_dict.tsv
  (166M parameters, 333 MB; random weights). The rehearsal fine-tunes from it: the trainer accepts an ``init_from``
  only with the architecture of its ``model`` preset, and the rdt-1b preset cannot train here (fp32 weights, gradients,
  AdamW moments and EMA of 1.2B parameters are ~25 GB; this machine has 24 GB and 2 cores).
- ``robotics-diffusion-transformer/rdt-1b``: the released ``config.json`` with ``rdt.depth`` 2 instead of 28 (REDUCED:
  the 28-block file is 2.46 GB and one policy call of it on 2 CPU cores takes minutes; 2 blocks keep one language and
  one image cross-attention block) and a bf16 ``pytorch_model.bin`` with the released keys and shapes of every
  tensor that exists at that depth (blocks 0 and 1 and all non-block tensors at full width: hidden 2048, 32 heads,
  4096-dim language and 1152-dim image tokens, 4374 image and 1024 language positions). Evaluated only.
- ``google/t5-v1_1-xxl``: the released ``config.json`` with ``num_layers`` = ``num_decoder_layers`` = 1 instead of 24
  (REDUCED: the real encoder-decoder is 11B parameters, 44.5 GB; every width is the real one: d_model 4096, d_ff
  10240, 64 heads of 64, vocabulary 32128, so the embeddings fit RDT-1B's lang_token_dim), a fp32 ``pytorch_model.bin``
  of the whole encoder-decoder (shared embedding, encoder, decoder, untied lm_head: 716M parameters, 2.9 GB),
  ``spiece.model``, ``special_tokens_map.json`` and ``tokenizer_config.json``, and no ``tokenizer.json``: the
  tokenizer is converted from ``spiece.model`` by transformers (sentencepiece + protobuf), as for the real repo.
  ``spiece.model`` is a SentencePiece unigram model trained here on LIBERO's instructions (REDUCED: at most 200
  pieces, 114 from that text, instead of 32000; nothing can be downloaded) with T5's special ids (pad 0, eos 1,
  unk 2, no bos).
- ``google/siglip-so400m-patch14-384``: the released dual-tower ``SiglipModel`` ``config.json`` with
  ``num_hidden_layers`` 1 instead of 27 in both towers (REDUCED: time; widths are real: hidden 1152, MLP 4304, 16
  heads, 384 px images in 14 px patches = 729 tokens, so the image tokens fit RDT's img_cond_len 4374 = 6 x 729), a
  fp32 ``model.safetensors`` of both towers (86M parameters) and the released ``preprocessor_config.json``. The
  text tower's tokenizer files are left out (the pipeline uses the vision tower only).

Weights are random (deterministic): the rehearsal checks that the files load, fit together and run through every
stage, not what the models predict.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

RDT_1B = "robotics-diffusion-transformer/rdt-1b"
RDT_170M = "robotics-diffusion-transformer/rdt-170m"
T5_XXL = "google/t5-v1_1-xxl"
SIGLIP = "google/siglip-so400m-patch14-384"

RDT_1B_STANDIN_DEPTH = 2  # blocks of the rdt-1b stand-in (released: 28)
T5_STANDIN_LAYERS = 1  # encoder and decoder blocks of the T5 stand-in (released: 24 each)
SIGLIP_STANDIN_LAYERS = 1  # layers of each SigLIP tower (released: 27)
SPIECE_PIECES = 200  # the most SentencePiece pieces of the T5 stand-in (released: 32000)

#: one fixed commit per repository (refs/main points to it)
COMMITS = {
    RDT_1B: "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    RDT_170M: "b1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    T5_XXL: "c1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
    SIGLIP: "d1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
}

# google/t5-v1_1-xxl config.json as released, but for the layer counts
T5_CONFIG = {
    "architectures": ["T5ForConditionalGeneration"],
    "d_ff": 10240,
    "d_kv": 64,
    "d_model": 4096,
    "decoder_start_token_id": 0,
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "layer_norm_epsilon": 1e-06,
    "model_type": "t5",
    "num_decoder_layers": T5_STANDIN_LAYERS,
    "num_heads": 64,
    "num_layers": T5_STANDIN_LAYERS,
    "output_past": True,
    "pad_token_id": 0,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "vocab_size": 32128,
}
T5_EXTRA_IDS = [f"<extra_id_{i}>" for i in range(100)]
T5_SPECIAL_TOKENS = {
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "additional_special_tokens": T5_EXTRA_IDS,
}
T5_TOKENIZER_CONFIG = {**T5_SPECIAL_TOKENS, "extra_ids": 100, "model_max_length": 512}

# google/siglip-so400m-patch14-384 config.json and preprocessor_config.json as released, but for the layer counts
SIGLIP_CONFIG = {
    "architectures": ["SiglipModel"],
    "initializer_factor": 1.0,
    "model_type": "siglip",
    "text_config": {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "model_type": "siglip_text_model",
        "num_attention_heads": 16,
        "num_hidden_layers": SIGLIP_STANDIN_LAYERS,
    },
    "torch_dtype": "float32",
    "vision_config": {
        "hidden_size": 1152,
        "image_size": 384,
        "intermediate_size": 4304,
        "model_type": "siglip_vision_model",
        "num_attention_heads": 16,
        "num_hidden_layers": SIGLIP_STANDIN_LAYERS,
        "patch_size": 14,
    },
}
SIGLIP_PREPROCESSOR = {
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "SiglipProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 384, "width": 384},
}


# ------------------------------------------------------------------------------------------------ cache layout
class Repo:
    """One model repository in the cache: files go to blobs/ and are linked from snapshots/<commit>/."""

    def __init__(self, hub: Path, repo_id: str) -> None:
        self.repo_id = repo_id
        self.root = hub / f"models--{repo_id.replace('/', '--')}"
        self.commit = COMMITS[repo_id]
        self.snapshot = self.root / "snapshots" / self.commit
        for sub in ("blobs", "refs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.snapshot.mkdir(parents=True, exist_ok=True)
        (self.root / "refs" / "main").write_text(self.commit)

    def add(self, name: str, write, lfs: bool) -> Path:
        """``write(path)`` writes the file; it becomes blobs/<hash> (sha256 for LFS files, else the git blob sha1)
        with snapshots/<commit>/<name> a relative link to it."""
        tmp = self.root / "blobs" / f".incoming-{name.replace('/', '_')}"
        write(tmp)
        with open(tmp, "rb") as f:
            if lfs:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            else:
                data = f.read()
                digest = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = self.root / "blobs" / digest
        os.replace(tmp, blob)
        link = self.snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
        return link

    def add_json(self, name: str, value: dict) -> Path:
        return self.add(name, lambda p: p.write_text(json.dumps(value, indent=2) + "\n"), lfs=False)

    def add_text(self, name: str, text: str) -> Path:
        return self.add(name, lambda p: p.write_text(text), lfs=False)


def _hide_torchvision() -> None:
    from rdt.encoders import _hide_unloadable_torchvision

    _hide_unloadable_torchvision()  # transformers' model imports fail on a CUDA torchvision beside a CPU torch


def _filled(shape, name: str, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """Random weights: N(0, 0.02) matrices, 1 for norm weights, 0 for biases (any finite values would do)."""
    if len(shape) >= 2:
        return torch.empty(shape, dtype=dtype).uniform_(-0.035, 0.035, generator=gen)  # std 0.02
    return (torch.zeros if name.endswith("bias") else torch.ones)(shape, dtype=dtype)


# ------------------------------------------------------------------------------------------------ the repos
def write_rdt(hub: Path, repo_id: str, depth: int | None = None, seed: int = 0) -> Path:
    """A released-form RDT repo: flat config.json (rdt-170m preset, or rdt-1b's with ``depth`` blocks) and an all-bf16
    ``torch.save``d state_dict in pytorch_model.bin."""
    from rdt.model.config import RDTConfig
    from rdt.model.runner import build_runner

    if repo_id == RDT_170M:
        config = RDTConfig.preset("rdt-170m")
    else:
        config = RDTConfig.preset("rdt-1b").replace(depth=depth or RDT_1B_STANDIN_DEPTH)
    runner = build_runner(config, seed=seed)  # the model's own initialisation (xavier, zero final layer, sin-cos)
    state = OrderedDict((k, v.detach().to(torch.bfloat16)) for k, v in runner.state_dict().items())
    del runner
    repo = Repo(hub, repo_id)
    repo.add_text("config.json", config.to_json())  # json.dumps(indent=2, sort_keys=True) as released
    repo.add("pytorch_model.bin", lambda p: torch.save(state, p), lfs=True)
    return repo.snapshot


def train_spiece(path: Path, pieces: int = SPIECE_PIECES) -> None:
    """A SentencePiece unigram model with T5's special ids (pad 0, eos 1, unk 2, no bos), trained on LIBERO's
    instructions."""
    import sentencepiece as spm

    from rdt.libero import suites

    sentences = sorted({t.language for s in suites.suite_names() for t in suites.tasks(s)})
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences * 4),
        model_writer=model,
        vocab_size=pieces,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        pad_piece="<pad>",
        eos_piece="</s>",
        unk_piece="<unk>",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())


def write_t5(hub: Path, seed: int = 0) -> Path:
    """google/t5-v1_1-xxl: config.json, the encoder-decoder's fp32 pytorch_model.bin (2.9 GB, written without a second
    copy in memory), spiece.model and the tokenizer's configs."""
    _hide_torchvision()
    from transformers import T5Config, T5ForConditionalGeneration

    with torch.device("meta"):
        shapes = T5ForConditionalGeneration(T5Config.from_dict(T5_CONFIG)).state_dict()
    gen = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, meta in shapes.items():
        if key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            state[key] = state["shared.weight"]  # tied to shared: one storage in the file, as save_pretrained wrote
        else:
            state[key] = _filled(tuple(meta.shape), key, gen, torch.float32)
    repo = Repo(hub, T5_XXL)
    repo.add_json("config.json", T5_CONFIG)
    repo.add("pytorch_model.bin", lambda p: torch.save(state, p), lfs=True)
    state.clear()
    repo.add("spiece.model", train_spiece, lfs=True)
    repo.add_json("special_tokens_map.json", T5_SPECIAL_TOKENS)
    repo.add_json("tokenizer_config.json", T5_TOKENIZER_CONFIG)
    return repo.snapshot


def write_siglip(hub: Path, seed: int = 0) -> Path:
    """google/siglip-so400m-patch14-384: the dual-tower model.safetensors, config.json, preprocessor_config.json."""
    _hide_torchvision()
    from safetensors.torch import save_file
    from transformers import SiglipConfig, SiglipModel
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the released config's text tower ids (bos 49406) draw a warning; they are unused
    try:
        with torch.device("meta"):
            shapes = SiglipModel(SiglipConfig.from_dict(SIGLIP_CONFIG)).state_dict()
    finally:
        hf_logging.set_verbosity(level)
    gen = torch.Generator().manual_seed(seed)
    state = {k: _filled(tuple(v.shape), k, gen, torch.float32) for k, v in shapes.items()}
    state["logit_scale"], state["logit_bias"] = torch.tensor([2.3]), torch.tensor([-10.0])
    repo = Repo(hub, SIGLIP)
    repo.add_json("config.json", SIGLIP_CONFIG)
    repo.add("model.safetensors", lambda p: save_file(state, str(p), metadata={"format": "pt"}), lfs=True)
    repo.add_json("preprocessor_config.json", SIGLIP_PREPROCESSOR)
    return repo.snapshot


def snapshot_dirs(root: Path) -> dict[str, Path]:
    """Repo id -> its snapshot folder in the cache at HF_HOME ``root``."""
    hub = Path(root) / "hub"
    return {r: hub / f"models--{r.replace('/', '--')}" / "snapshots" / COMMITS[r] for r in COMMITS}


def write_hub_cache(root: Path) -> dict[str, Path]:
    """All four stand-ins in ``root/hub`` (the HF_HOME ``root``); repo id -> its snapshot folder."""
    hub = Path(root) / "hub"
    write_rdt(hub, RDT_170M)
    write_rdt(hub, RDT_1B)
    write_t5(hub)
    write_siglip(hub)
    return snapshot_dirs(root)


def hub_env(root: Path) -> dict[str, str]:
    """The environment that points huggingface_hub and transformers at the stand-in cache, offline."""
    root = Path(root)
    return {
        "HF_HOME": str(root),
        "HF_HUB_CACHE": str(root / "hub"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


@pytest.fixture(scope="module")
def standin_hub(tmp_path_factory):
    """(HF_HOME folder, repo id -> snapshot folder) of a hub cache holding the four stand-ins, built once per module
    (3.6 GB on disk, most of it the T5 file; about 30 s) in a separate process, so that the 4 GB it takes to write
    them are given back before the workflow runs, and removed afterwards (pytest keeps its last three tmp folders)."""
    root = tmp_path_factory.mktemp("hf")
    subprocess.run(
        [sys.executable, __file__, str(root)], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900
    )
    yield root, snapshot_dirs(root)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":  # python tests/hub_standins.py HF_HOME: the stand-ins for a rehearsal by hand
    for repo_id, folder in write_hub_cache(Path(sys.argv[1])).items():
        print(f"{repo_id}: {folder}")
