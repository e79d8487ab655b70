"""Pure torch modules: adapters, trunk, decoders and the text encoder. Nothing here reads AnnData."""

from omnist.nn.adapters import ExpressionAdapter, GraphAdapter, ImageAdapter, TextAdapter
from omnist.nn.backbone import OUTPUT_MODALITIES, Backbone, BackboneShape
from omnist.nn.decoders import EmbeddingDecoder, ExpressionDecoder, TextDecoder
from omnist.nn.text import DEFAULT_TEXT_ENCODER, TextEncoder, text_encoder_path
from omnist.nn.trunk import Trunk

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "OUTPUT_MODALITIES",
    "Backbone",
    "BackboneShape",
    "EmbeddingDecoder",
    "ExpressionAdapter",
    "GraphAdapter",
    "ExpressionDecoder",
    "ImageAdapter",
    "TextAdapter",
    "TextDecoder",
    "TextEncoder",
    "Trunk",
    "text_encoder_path",
]
