"""Encode every unique instruction once with a T5 text encoder and save the embeddings as one safetensors file.

Instructions come from training HDF5 files (the ``instruction`` attribute of each ``/episodes/*`` group), from a
text file (one instruction per line) and/or from LIBERO task lists (``--instructions-from-tasks SUITE [TASK ...]``,
for evaluation-only runs). The empty instruction "" is always added: it is RDT's ``empty_lang_embed`` (only
``</s>``), which training uses for condition-masked samples. The output (docs/formats.md section 4) holds tensors
``emb_<i>`` (L_i, D) float32 (tokens incl. ``</s>``, padding removed) and metadata ``encoder``, ``max_length``,
``hidden_size``, ``instructions`` (JSON list, index i -> ``emb_<i>``). Training and evaluation read it with
``LanguageTable.load``.

Evaluation-only example (a released checkpoint on LIBERO-10, with T5-XXL in the local Hugging Face cache):
  python -m rdt encode --instructions-from-tasks libero_10 --text-encoder google/t5-v1_1-xxl \
      --out work/lang10.safetensors
"""

from __future__ import annotations

import argparse

from rdt.errors import UserError

#: the encoder weights' dtypes by torch name ("auto": float32 for the tiny encoder, bfloat16 otherwise, as RDT does)
DTYPES = ("float32", "bfloat16")


# ================================================================================================ command
def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("instruction sources (at least one; all given are combined)")
    src.add_argument(
        "--data", nargs="+", default=[], metavar="H5", help="training HDF5 file(s): the instruction of every episode"
    )
    src.add_argument("--instructions", metavar="FILE", help="text file with one instruction per line")
    src.add_argument(
        "--instructions-from-tasks",
        nargs="+",
        action="append",
        default=[],
        metavar="ARG",
        help="SUITE [TASK ...]: instructions of LIBERO tasks (names, indices, patterns; none = all "
        "tasks of the suite); may be repeated",
    )
    p.add_argument(
        "--text-encoder",
        required=True,
        metavar="NAME",
        help="'tiny', a Hugging Face id in the local cache (google/t5-v1_1-xxl) or a local folder",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="output .safetensors file (written atomically)")
    p.add_argument(
        "--device",
        default=None,
        help="torch device for the encoder (default: cuda if available, else cpu)",
    )
    p.add_argument(
        "--dtype",
        choices=["auto", *DTYPES],
        default="auto",
        help="encoder weights dtype; auto = float32 for 'tiny', bfloat16 otherwise (as RDT encodes)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="instructions per encoder call (default 8)")


def main(args: argparse.Namespace) -> int:
    import torch

    from rdt.encoders import TINY, load_text_encoder
    from rdt.lang import (
        encode_instructions,
        instructions_from_tasks,
        instructions_from_text,
        instructions_from_training_file,
    )

    instructions: list[str] = []
    for data in args.data:
        instructions += instructions_from_training_file(data)
    if args.instructions:
        instructions += instructions_from_text(args.instructions)
    for suite, *selectors in args.instructions_from_tasks:
        instructions += instructions_from_tasks(suite, selectors)
    if not (args.data or args.instructions or args.instructions_from_tasks):
        raise UserError("give at least one instruction source: --data, --instructions or --instructions-from-tasks")
    if args.batch_size < 1:
        raise UserError(f"--batch-size={args.batch_size}; expected a positive integer")
    auto = "float32" if args.text_encoder == TINY else "bfloat16"
    dtype = getattr(torch, auto if args.dtype == "auto" else args.dtype)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    encoder = load_text_encoder(args.text_encoder, device=device, dtype=dtype)
    n = encode_instructions(instructions, encoder, args.out, batch_size=args.batch_size)
    print(
        f"encoded {n} embeddings ({len(instructions)} instructions given, duplicates once, plus the empty "
        f"instruction) with {encoder.name!r} -> {args.out}"
    )
    return 0
