"""Modality decoders shared by all tasks: expression over a gene vocabulary, text-space scores, embeddings."""

from __future__ import annotations

import torch
from torch import nn


class ExpressionDecoder(nn.Module):
    """Reads a value for any vocabulary gene as the dot product of an output token with that gene's embedding."""

    def __init__(self, n_genes: int, d_model: int):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.genes = nn.Embedding(n_genes, d_model)
        self.bias = nn.Parameter(torch.zeros(n_genes))
        nn.init.normal_(self.genes.weight, std=d_model**-0.5)

    def forward(self, state: torch.Tensor, gene_index: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``(B, G)`` values for output-token states ``(B, d)`` and gene indices ``(G,)`` (all if None)."""
        weight, bias = self.genes.weight, self.bias
        if gene_index is not None:
            weight, bias = weight[gene_index], bias[gene_index]
        return self.hidden(state) @ weight.T + bias


class TextDecoder(nn.Module):
    """Projects an output token into the text-embedding space and scores it against candidate texts."""

    def __init__(self, d_model: int, text_width: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Linear(d_model, text_width))
        self.log_temperature = nn.Parameter(torch.tensor(2.5))

    def embed(self, state: torch.Tensor) -> torch.Tensor:
        """Return L2-normalised text-space embeddings ``(B, text_width)``."""
        return nn.functional.normalize(self.project(state), dim=-1)

    def forward(self, state: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, C)``: scaled cosine similarity to L2-normalised candidate embeddings ``(C, width)``."""
        return self.embed(state) @ candidates.T * self.log_temperature.exp()


class EmbeddingDecoder(nn.Module):
    """Projects an output token to a spot embedding for clustering and neighbour graphs."""

    def __init__(self, d_model: int, width: int):
        super().__init__()
        self.project = nn.Linear(d_model, width)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Return embeddings ``(B, width)``."""
        return self.project(state)
