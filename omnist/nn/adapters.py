"""Modality adapters: each turns one input modality into tokens of the trunk's width."""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.GELU(),
        nn.Conv2d(channels_out, channels_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.GELU(),
        nn.MaxPool2d(2),
    )


class ImageAdapter(nn.Module):
    """A small CNN, trained from scratch, that turns an RGB patch into a grid of tokens.

    Optional hand-made image features (stain and texture statistics) enter as one more token.

    Parameters
    ----------
    d_model
        Token width.
    patch_px
        Side of the input patch in pixels; a multiple of 16.
    n_features
        Length of the hand-made feature vector per patch, 0 for none.
    width
        Channels of the first convolution block; later blocks double it up to ``4 * width``.
    grid
        Side of the token grid; the feature map is average-pooled to ``grid × grid`` tokens.
    """

    def __init__(self, d_model: int, patch_px: int = 64, n_features: int = 0, width: int = 32, grid: int = 4):
        super().__init__()
        if patch_px % 16:
            raise ValueError(f"patch_px={patch_px} is invalid: use a multiple of 16.")
        self.cnn = nn.Sequential(
            _conv_block(3, width),
            _conv_block(width, 2 * width),
            _conv_block(2 * width, 4 * width),
            _conv_block(4 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.project = nn.Linear(4 * width, d_model)
        self.position = nn.Parameter(torch.zeros(1, grid * grid, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.n_features = n_features
        if n_features:
            self.features = nn.Sequential(
                nn.LayerNorm(n_features), nn.Linear(n_features, d_model), nn.GELU(), nn.Linear(d_model, d_model)
            )

    def forward(self, patches: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Return tokens ``(B, grid² [+1], d_model)`` for normalised patches ``(B, 3, H, W)``."""
        grid = self.pool(self.cnn(patches)).flatten(2).transpose(1, 2)
        tokens = self.project(grid) + self.position
        if self.n_features:
            if features is None:
                raise ValueError("This image adapter was built with hand-made features: pass `features`.")
            tokens = torch.cat([tokens, self.features(features).unsqueeze(1)], dim=1)
        return tokens


class TextAdapter(nn.Module):
    """A projection of frozen text-encoder token embeddings to the trunk's width."""

    def __init__(self, text_width: int, d_model: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(text_width, d_model), nn.LayerNorm(d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return ``(B, L, d_model)`` tokens for text-encoder tokens ``(B, L, text_width)``."""
        return self.project(tokens)


class ExpressionAdapter(nn.Module):
    """Turns an expression vector over the gene vocabulary into a few value-aware tokens.

    Each gene has a learned embedding of ``n_tokens × d_model`` values. A spot's tokens are the sum of its
    genes' embeddings weighted by their standardised expression, plus the mean embedding of the genes the
    section measured, so sections with different gene panels map into the same token space. Genes a section
    did not measure are NaN and contribute nothing.
    """

    def __init__(self, n_genes: int, d_model: int, n_tokens: int = 8):
        super().__init__()
        self.n_tokens = n_tokens
        self.d_model = d_model
        self.value = nn.Parameter(torch.randn(n_genes, n_tokens * d_model))
        self.presence = nn.Parameter(torch.randn(n_genes, n_tokens * d_model) * 0.02)
        self.norm = nn.LayerNorm(d_model)

    def pooled(self, values: torch.Tensor) -> torch.Tensor:
        """Return tokens ``(..., n_tokens, d_model)`` for values ``(..., n_genes)`` with NaN for unmeasured genes."""
        measured = torch.isfinite(values)
        count = measured.sum(dim=-1, keepdim=True).clamp(min=1).float()
        clean = torch.nan_to_num(values) * measured
        tokens = clean @ self.value / count.sqrt()
        tokens = tokens + (measured.float() @ self.presence) / count
        return self.norm(tokens.unflatten(-1, (self.n_tokens, self.d_model)))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """Return tokens ``(B, n_tokens, d_model)`` for values ``(B, n_genes)``."""
        return self.pooled(values)

    def summary(self, values: torch.Tensor) -> torch.Tensor:
        """Return one token ``(..., d_model)`` per vector: the mean of the tokens, computed in one product."""
        measured = torch.isfinite(values)
        count = measured.sum(dim=-1, keepdim=True).clamp(min=1).float()
        clean = torch.nan_to_num(values) * measured
        value = self.value.unflatten(-1, (self.n_tokens, self.d_model)).mean(dim=1)
        presence = self.presence.unflatten(-1, (self.n_tokens, self.d_model)).mean(dim=1)
        return clean @ value / count.sqrt() + (measured.float() @ presence) / count


class GraphAdapter(nn.Module):
    """Turns a spot's spatial neighbours into one token each: their expression plus their relative position.

    Relative positions are in µm and enter through a small MLP after division by ``scale_um``.
    """

    def __init__(self, d_model: int, scale_um: float = 100.0):
        super().__init__()
        self.scale_um = scale_um
        self.position = nn.Sequential(nn.Linear(3, d_model), nn.GELU(), nn.Linear(d_model, d_model))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, values: torch.Tensor, offsets_um: torch.Tensor, expression: ExpressionAdapter) -> torch.Tensor:
        """Return ``(B, K, d_model)`` tokens for neighbour values ``(B, K, n_genes)`` and offsets ``(B, K, 2)``.

        The neighbours' expression goes through the spot's own ``expression`` adapter, so both share gene
        embeddings.
        """
        content = expression.summary(values)
        scaled = offsets_um / self.scale_um
        distance = scaled.norm(dim=-1, keepdim=True)
        return self.norm(content + self.position(torch.cat([scaled, distance], dim=-1)))
