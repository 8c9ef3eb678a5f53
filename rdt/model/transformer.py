"""The RDT diffusion transformer (``model.*`` keys of the checkpoint).

Input tokens ``[timestep, control frequency, state, 64 noisy actions]`` (67 for RDT), learned positional tables
added after concatenation; blocks alternate cross-attention between language (even blocks, boolean mask) and
image tokens (odd blocks); the output is the final layer applied to the last ``horizon`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rdt.model.blocks import FinalLayer, RDTBlock, TimestepEmbedder
from rdt.model.config import RDTConfig
from rdt.model.posemb import multimodal_pos_embed


@dataclass
class Conditions:
    """Per-call condition state: each block's cross-attention keys/values and the language mask.

    Built once by ``RDT.prepare_conditions`` and shared by every denoising step of one sampling call."""

    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block: (B,H,L,hd) keys, values
    lang_mask: torch.Tensor | None  # (B, L_lang) bool, True = valid token


class RDT(nn.Module):
    def __init__(self, cfg: RDTConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.horizon = cfg.pred_horizon
        self.t_embedder = TimestepEmbedder(d)
        self.freq_embedder = TimestepEmbedder(d)
        self.x_pos_embed = nn.Parameter(torch.zeros(1, cfg.pred_horizon + 3, d))
        self.lang_cond_pos_embed = nn.Parameter(torch.zeros(1, cfg.max_lang_cond_len, d))
        self.img_cond_pos_embed = nn.Parameter(torch.zeros(1, cfg.img_cond_len, d))
        self.blocks = nn.ModuleList([RDTBlock(d, cfg.num_heads, cfg.rms_norm) for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(d, cfg.action_dim, cfg.rms_norm)
        self._init_weights(cfg)

    def _init_weights(self, cfg: RDTConfig) -> None:
        """xavier-uniform Linear weights, zero biases; timestep/frequency MLP weights N(0, 0.02); sin-cos
        positional tables; zero final fc2 (the network starts by predicting 0)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        d = cfg.hidden_size
        x_table = multimodal_pos_embed(
            d, [("timestep", 1), ("ctrl_freq", 1), ("state", 1), ("action", cfg.pred_horizon)], embed_modality=True
        )
        lang_table = multimodal_pos_embed(d, cfg.lang_pos_embed_config, embed_modality=False)
        img_table = multimodal_pos_embed(d, cfg.img_pos_embed_config, embed_modality=False)
        with torch.no_grad():
            for param, table in (
                (self.x_pos_embed, x_table),
                (self.lang_cond_pos_embed, lang_table),
                (self.img_cond_pos_embed, img_table),
            ):
                if not param.is_meta:
                    param.copy_(torch.from_numpy(table).float().unsqueeze(0))
        for emb in (self.t_embedder, self.freq_embedder):
            nn.init.normal_(emb.mlp[0].weight, std=0.02)
            nn.init.normal_(emb.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.final_layer.ffn_final.fc2.weight)
        nn.init.zeros_(self.final_layer.ffn_final.fc2.bias)

    def prepare_conditions(
        self, lang_c: torch.Tensor, img_c: torch.Tensor, lang_mask: torch.Tensor | None = None
    ) -> Conditions:
        """Adapted conditions lang_c (B,L,D) and img_c (B,N_img,D) -> positional tables added and every block's
        cross-attention keys/values projected (even blocks: language, odd blocks: image)."""
        lang_c = lang_c + self.lang_cond_pos_embed[:, : lang_c.shape[1]]
        img_c = img_c + self.img_cond_pos_embed
        kv = [blk.cross_attn.project_kv(lang_c if i % 2 == 0 else img_c) for i, blk in enumerate(self.blocks)]
        return Conditions(kv=kv, lang_mask=None if lang_mask is None else lang_mask.bool())

    def forward(
        self,
        x: torch.Tensor,
        freq: torch.Tensor,
        t: torch.Tensor,
        lang_c: torch.Tensor | None = None,
        img_c: torch.Tensor | None = None,
        lang_mask: torch.Tensor | None = None,
        conditions: Conditions | None = None,
    ) -> torch.Tensor:
        """x (B, 1+horizon, D) adapted [state; actions]; freq (B,) Hz; t (B,) or (1,) diffusion step;
        either lang_c/img_c/lang_mask or precomputed ``conditions`` -> (B, horizon, action_dim)."""
        if conditions is None:
            conditions = self.prepare_conditions(lang_c, img_c, lang_mask)
        b = x.shape[0]
        t_tok = self.t_embedder(t).unsqueeze(1)  # (B or 1, 1, D)
        if t_tok.shape[0] == 1 and b > 1:
            t_tok = t_tok.expand(b, -1, -1)
        f_tok = self.freq_embedder(freq).unsqueeze(1)  # (B, 1, D)
        h = torch.cat([t_tok.to(x.dtype), f_tok.to(x.dtype), x], dim=1) + self.x_pos_embed
        for i, blk in enumerate(self.blocks):
            h = blk(h, conditions.kv[i], conditions.lang_mask if i % 2 == 0 else None)
        return self.final_layer(h)[:, -self.horizon :]
