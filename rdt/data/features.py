"""Image tokens of the frozen vision encoder, computed once per frame and reused at every training step.

With image augmentation off, the encoder sees the same pixels every time a frame is drawn, so its features can be
computed before training (one encoder pass per frame instead of six per sample) and looked up by the frame ids
that ``LiberoDataset(frame_ids=True)`` returns. The lookup gives exactly what ``VisionEncoder.encode_views`` gives
for the same frames (the test compares them), including the background features of invalid views.

Memory: frames x patches x hidden x 4 bytes (tiny encoder: 2 KiB a frame; SigLIP-so400m: 729 x 1152 x 2 bytes =
1.6 MiB a frame in bf16, so only small datasets fit). ``build`` refuses a cache larger than ``max_bytes``.
"""

from __future__ import annotations

import torch

from rdt.encoders import NUM_VIEWS, VisionEncoder
from rdt.errors import UserError
from rdt.utils.progress import Progress

DEFAULT_MAX_BYTES = 8 << 30


class FrameFeatures:
    """``views(frame_ids (B, 6), valid (B, 6)) -> (B, 6 x P, D)`` image tokens from a table of per-frame features."""

    def __init__(self, table: torch.Tensor, background: torch.Tensor) -> None:
        self.table = table  # (frames, P, D); rows of absent cameras stay zero and are never read
        self.background = background  # (P, D)

    @classmethod
    @torch.no_grad()
    def build(
        cls, dataset, vision: VisionEncoder, batch_size: int = 256, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> FrameFeatures:
        """Encode every frame of every present camera of ``dataset`` (a ``LiberoDataset``), ``batch_size``
        frames per encoder call."""
        slots = len(dataset.slots)
        frames = len(dataset) * slots
        elem = torch.finfo(vision.dtype).bits // 8
        size = frames * vision.num_patches * vision.hidden_size * elem
        if size > max_bytes:
            raise UserError(
                f"train key 'cache_image_features': the features of {frames} frames take "
                f"{size / 2**30:.1f} GiB (> {max_bytes / 2**30:.0f} GiB); set cache_image_features: "
                "false for a dataset this large"
            )
        table = torch.zeros(frames, vision.num_patches, vision.hidden_size, dtype=vision.dtype, device=vision.device)
        todo = [(e, j) for e in range(len(dataset.lengths)) for j in range(slots) if dataset.present[j]]
        with Progress(len(todo), "image features", unit="camera episode") as progress:
            for e, j in todo:
                pixels = vision.preprocess(dataset.read_episode_frames(e, j))  # (T, 3, S, S)
                ids = torch.tensor([dataset.frame_id(e, j, t) for t in range(len(pixels))])
                for lo in range(0, len(pixels), batch_size):
                    table[ids[lo : lo + batch_size].to(table.device)] = vision.encode(pixels[lo : lo + batch_size])
                progress.update(1)
        return cls(table, vision.background_features().to(table.dtype))

    def views(self, frame_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Image tokens (B, 6 x P, D) in RDT's view order; invalid views get the background features."""
        if frame_ids.ndim != 2 or frame_ids.shape[1] != NUM_VIEWS or valid.shape != frame_ids.shape:
            raise UserError(
                f"frame ids {tuple(frame_ids.shape)} / valid {tuple(valid.shape)}; expected (B, {NUM_VIEWS}) each"
            )
        b = frame_ids.shape[0]
        ids = frame_ids.to(self.table.device)
        ok = valid.to(self.table.device).bool() & (ids >= 0)
        feats = self.table[ids.clamp(min=0)]  # (B, 6, P, D)
        feats = torch.where(ok[..., None, None], feats, self.background)
        return feats.reshape(b, NUM_VIEWS * self.table.shape[1], self.table.shape[2])
