"""The any-to-any backbone: adapters around one trunk, with modality decoders and no task heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omnist.nn.adapters import ExpressionAdapter, GraphAdapter, ImageAdapter, TextAdapter
from omnist.nn.decoders import EmbeddingDecoder, ExpressionDecoder, TextDecoder
from omnist.nn.trunk import Trunk

OUTPUT_MODALITIES = ("expression", "text", "embedding")


@dataclass
class BackboneShape:
    """Sizes that fix the backbone's parameter shapes."""

    d_model: int
    n_layers: int
    n_heads: int
    dropout: float
    patch_px: int
    image_width: int
    n_image_features: int
    n_genes: int
    text_width: int
    n_query_tokens: int
    n_expression_tokens: int = 8


class Backbone(nn.Module):
    """Instruction tokens + input-modality tokens + output queries → trunk → modality decoder."""

    def __init__(self, shape: BackboneShape):
        super().__init__()
        self.shape = shape
        d_model = shape.d_model
        self.instruction = TextAdapter(shape.text_width, d_model)
        self.image = ImageAdapter(d_model, shape.patch_px, shape.n_image_features, width=shape.image_width)
        self.expression = ExpressionAdapter(shape.n_genes, d_model, shape.n_expression_tokens)
        self.graph = GraphAdapter(d_model)
        self.text = TextAdapter(shape.text_width, d_model)
        self.trunk = Trunk(d_model, shape.n_layers, shape.n_heads, shape.dropout)
        self.queries = nn.Parameter(torch.zeros(len(OUTPUT_MODALITIES), shape.n_query_tokens, d_model))
        nn.init.normal_(self.queries, std=0.02)
        self.expression_decoder = ExpressionDecoder(shape.n_genes, d_model)
        self.text_decoder = TextDecoder(d_model, shape.text_width)
        self.embedding_decoder = EmbeddingDecoder(d_model, d_model)

    def encode(
        self,
        instruction: torch.Tensor,
        instruction_padding: torch.Tensor,
        inputs: dict[str, dict[str, torch.Tensor]],
        output: str,
    ) -> torch.Tensor:
        """Return the pooled output-query state ``(B, d_model)``.

        Parameters
        ----------
        instruction
            Text-encoder token embeddings of the instruction, ``(1 or B, L, text_width)``.
        instruction_padding
            ``(1 or B, L)``, True at padding.
        inputs
            Per modality, its tensors: ``{"image": {"patches": (B, 3, H, W), "features": (B, F)},
            "expression": {"values": (B, G)}, "graph": {"values": (B, K, G), "offsets": (B, K, 2),
            "padding": (B, K)}, "text": {"tokens": (B, L, text_width), "padding": (B, L)}}``; expression
            values are standardised per gene with NaN for unmeasured genes.
        output
            Output modality, one of ``"expression"``, ``"text"``, ``"embedding"``.
        """
        if output not in OUTPUT_MODALITIES:
            raise ValueError(f"Output modality {output!r} is invalid: choose from {list(OUTPUT_MODALITIES)}.")
        segments = [("instruction", self.instruction(instruction), instruction_padding)]
        for modality, tensors in inputs.items():
            if modality == "image":
                segments.append(("image", self.image(tensors["patches"], tensors.get("features")), None))
            elif modality == "expression":
                segments.append(("expression", self.expression(tensors["values"]), None))
            elif modality == "graph":
                tokens = self.graph(tensors["values"], tensors["offsets"], self.expression)
                segments.append(("graph", tokens, tensors["padding"]))
            elif modality == "text":
                segments.append(("text", self.text(tensors["tokens"]), tensors["padding"]))
            else:
                raise ValueError(f"Input modality {modality!r} has no adapter in this backbone.")
        query = self.queries[OUTPUT_MODALITIES.index(output)].unsqueeze(0)
        segments.append(("query", query, None))
        return self.trunk(segments).mean(dim=1)

    def decode_expression(self, state: torch.Tensor, gene_index: torch.Tensor | None = None) -> torch.Tensor:
        """Return expression values ``(B, G)`` for the genes in ``gene_index``."""
        return self.expression_decoder(state, gene_index)

    def decode_text(self, state: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, C)`` against candidate text embeddings."""
        return self.text_decoder(state, candidates)

    def decode_embedding(self, state: torch.Tensor) -> torch.Tensor:
        """Return spot embeddings ``(B, d_model)``."""
        return self.embedding_decoder(state)
