"""The model configuration, stored as ``config.json`` beside the weights."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

from omnist.nn.text import DEFAULT_TEXT_ENCODER

# Incremented whenever the parameter layout or the checkpoint files change incompatibly.
FORMAT_VERSION = 1


@dataclass
class OmniSTConfig:
    """Sizes and settings of an :class:`~omnist.model.OmniST` model.

    Parameters
    ----------
    d_model
        Token width of the trunk.
    n_layers
        Transformer layers in the trunk.
    n_heads
        Attention heads per layer.
    dropout
        Dropout inside the trunk.
    patch_px
        Side of the image patch the image adapter reads, in pixels.
    patch_um
        Side of the tissue window a patch covers, in µm. ``None`` until training fixes it from the first
        section (1.5 spot diameters).
    image_width
        Channels of the first CNN block of the image adapter.
    image_features
        Also feed hand-made stain and texture features to the image adapter.
    n_query_tokens
        Output query tokens per output modality.
    text_encoder
        Name or local folder of the frozen sentence encoder.
    """

    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    dropout: float = 0.1
    patch_px: int = 64
    patch_um: float | None = None
    image_width: int = 32
    image_features: bool = True
    n_query_tokens: int = 2
    text_encoder: str = DEFAULT_TEXT_ENCODER
    model_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        """Return the configuration as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> OmniSTConfig:
        """Build a configuration from :meth:`to_dict` output, rejecting other checkpoint format versions."""
        version = record.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"Checkpoint format version {version!r} is not supported by this omnist (format {FORMAT_VERSION}): "
                "load it with the omnist version that saved it, or retrain."
            )
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"config.json has unknown fields {unknown}: the checkpoint comes from another version.")
        return cls(**record)
