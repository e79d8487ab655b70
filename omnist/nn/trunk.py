"""The shared transformer trunk that mixes instruction, input and output-query tokens."""

from __future__ import annotations

import torch
from torch import nn

# Segment types, each with its own learned type embedding in the trunk.
SEGMENTS = ("instruction", "image", "expression", "graph", "text", "query")


class Trunk(nn.Module):
    """A pre-norm transformer encoder over the concatenated token segments."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, dropout: float = 0.1):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=4 * d_model,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.segment = nn.Embedding(len(SEGMENTS), d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, segments: list[tuple[str, torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
        """Mix the segments and return the output tokens of the last one.

        Parameters
        ----------
        segments
            ``(segment type, tokens (B, L, d), padding mask (B, L) or None)``; the last segment contains the
            output query tokens, whose states the decoders read.
        """
        batch = max(tokens.shape[0] for _, tokens, _ in segments)
        parts, masks = [], []
        for kind, tokens, padding in segments:
            tokens = tokens.expand(batch, -1, -1)
            parts.append(tokens + self.segment.weight[SEGMENTS.index(kind)])
            if padding is None:
                padding = torch.zeros(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
            masks.append(padding.expand(batch, -1))
        hidden = self.layers(torch.cat(parts, dim=1), src_key_padding_mask=torch.cat(masks, dim=1))
        n_query = segments[-1][1].shape[1]
        return self.norm(hidden[:, -n_query:])
