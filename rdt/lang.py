"""The instruction embeddings: one safetensors file of T5 embeddings, one per unique instruction (docs/formats.md
section 4), written by :func:`encode_instructions` and read by :class:`LanguageTable` in training and evaluation.
The command that writes it, `python -m rdt encode`, is rdt/encode.py."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from rdt.errors import UserError
from rdt.utils.atomic import atomic_path
from rdt.utils.progress import Progress

FORMAT = "rdt-lang/1"
EMPTY = ""  # the empty instruction: RDT's empty_lang_embed for condition-masked training samples


# ================================================================================================ reading
class LanguageTable:
    """Instruction -> embedding (L, D) float32, with the identity of the encoder that made them."""

    def __init__(
        self, path: Path, embeddings: dict[str, torch.Tensor], encoder: str, max_length: int, hidden_size: int
    ) -> None:
        self.path = path
        self.embeddings = embeddings
        self.encoder = encoder
        self.max_length = max_length
        self.hidden_size = hidden_size

    @classmethod
    def load(cls, path: str | Path) -> LanguageTable:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: language embeddings file not found (make it with `python -m rdt encode`)")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                names = set(f.keys())
                missing = [k for k in ("encoder", "max_length", "hidden_size", "instructions") if k not in meta]
                if missing:
                    raise UserError(
                        f"{path}: metadata lacks {', '.join(missing)}; expected a file written by "
                        "`python -m rdt encode` (docs/formats.md section 4)"
                    )
                instructions = json.loads(meta["instructions"])
                embeddings = {}
                for i, text in enumerate(instructions):
                    if f"emb_{i}" not in names:
                        raise UserError(f"{path}: tensor 'emb_{i}' for instruction {text!r} is missing")
                    embeddings[text] = f.get_tensor(f"emb_{i}").float()
        except UserError:
            raise
        except Exception as e:  # safetensors raises its own error types for corrupt/other files
            raise UserError(f"{path}: not a readable safetensors language-embedding file ({e})") from None
        return cls(path, embeddings, meta["encoder"], int(meta["max_length"]), int(meta["hidden_size"]))

    @property
    def instructions(self) -> list[str]:
        return list(self.embeddings)

    def __len__(self) -> int:
        return len(self.embeddings)

    def __contains__(self, instruction: str) -> bool:
        return instruction in self.embeddings

    def get(self, instruction: str) -> torch.Tensor:
        """The embedding (L, D) of ``instruction`` (exact string match)."""
        try:
            return self.embeddings[instruction]
        except KeyError:
            pass
        close = difflib.get_close_matches(instruction, self.instructions, n=3, cutoff=0.6)
        shown = close or self.instructions[:3]
        raise UserError(
            f"{self.path}: no embedding for instruction {instruction!r} ({len(self)} instructions encoded; "
            f"{'closest' if close else 'e.g.'}: {', '.join(repr(s) for s in shown)}). Re-run `python -m rdt encode` "
            f"including this instruction (--data / --instructions / --instructions-from-tasks)"
        )

    def check_encoder(self, name: str) -> None:
        """UserError unless the embeddings were made by text encoder ``name``."""
        if name != self.encoder:
            raise UserError(
                f"{self.path} was made with text encoder {self.encoder!r}, but {name!r} is expected "
                f"(the checkpoint's text encoder); re-encode with `python -m rdt encode --text-encoder "
                f"{name} ...`"
            )


def pad_language(embeds: Sequence[torch.Tensor], dim: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """B embeddings (L_i, D) -> zero-padded (B, max L_i, D) float32 and a boolean mask (B, max L_i) (True = real
    token), as the model takes them in training and at inference. ``dim``: the D the model expects (default: the
    first embedding's); an embedding of another shape is a UserError."""
    if not embeds:
        raise UserError("no language embeddings given (expected one (L, D) tensor per sample)")
    dim = int(embeds[0].shape[-1]) if dim is None else dim
    for i, e in enumerate(embeds):
        if e.ndim != 2 or e.shape[1] != dim or e.shape[0] < 1:
            raise UserError(
                f"language embedding {i} has shape {tuple(e.shape)}; the model expects (L>=1, {dim}) "
                "(were the embeddings made with the checkpoint's text encoder?)"
            )
    length = max(e.shape[0] for e in embeds)
    lang = torch.zeros(len(embeds), length, dim)
    mask = torch.zeros(len(embeds), length, dtype=torch.bool)
    for i, e in enumerate(embeds):
        lang[i, : e.shape[0]] = e.float()
        mask[i, : e.shape[0]] = True
    return lang, mask


# ================================================================================================ writing
def encode_instructions(instructions: Iterable[str], encoder, out: str | Path, batch_size: int = 8) -> int:
    """Encode the unique ``instructions`` (first-seen order) plus the empty instruction ``""`` (last, unless
    given) with a ``TextEncoder`` and write ``out`` atomically. Returns the number of embeddings written."""
    from safetensors.torch import save_file

    unique = list(dict.fromkeys(instructions))
    if not unique:
        raise UserError("no instructions to encode (the given sources contain none)")
    if EMPTY not in unique:
        unique.append(EMPTY)
    tensors: dict[str, torch.Tensor] = {}
    with Progress(len(unique), "encode", unit="instr", every=10.0) as progress:
        for start in range(0, len(unique), batch_size):
            chunk = unique[start : start + batch_size]
            for i, emb in enumerate(encoder.encode(chunk, batch_size=batch_size), start=start):
                tensors[f"emb_{i}"] = emb.float().contiguous()
            progress.update(len(chunk))
    metadata = {
        "format": FORMAT,
        "encoder": encoder.name,
        "max_length": str(encoder.max_length),
        "hidden_size": str(encoder.hidden_size),
        "dtype": str(encoder.model.dtype).replace("torch.", ""),
        "instructions": json.dumps(unique),
    }
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return len(unique)


def instructions_from_training_file(path: str | Path) -> list[str]:
    """The ``instruction`` attribute of every ``/episodes/*`` group of a training HDF5 (docs/formats.md §2)."""
    from rdt.data import episode_names, open_training_file

    out = []
    with open_training_file(path) as f:
        for name in episode_names(f):
            text = f["episodes"][name].attrs.get("instruction")
            if text is None:
                raise UserError(f"{path}: /episodes/{name} has no 'instruction' attribute")
            out.append(text.decode() if isinstance(text, bytes) else str(text))
    return out


def instructions_from_text(path: str | Path) -> list[str]:
    """Non-blank lines of a text file, stripped of surrounding whitespace."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: instructions file not found") from None
    return [line.strip() for line in lines if line.strip()]


def instructions_from_tasks(suite: str, selectors: list[str]) -> list[str]:
    """The language instructions of the selected LIBERO tasks (``rdt.libero.suites.select_tasks``)."""
    from rdt.libero.suites import select_tasks

    return [t.language for t in select_tasks(suite, selectors)]
