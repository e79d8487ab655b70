"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the real test data sets, from the ``OMNIST_DATA_DIR`` environment variable."""
    if "OMNIST_DATA_DIR" not in os.environ:
        pytest.skip("OMNIST_DATA_DIR is not set; set it to the folder that holds her2st/, visium_tiny/, ...")
    return Path(os.environ["OMNIST_DATA_DIR"])


@pytest.fixture(scope="session")
def her2st_dir(data_dir: Path) -> Path:
    """Folder of the her2st clone under ``OMNIST_DATA_DIR``."""
    return data_dir / "her2st"


@pytest.fixture(scope="session")
def load_her2st(her2st_dir: Path):
    """Return a function that reads a her2st section once per session and returns an independent copy each call."""
    from omnist.datasets import her2st

    cache = {}

    def load(section: str):
        if section not in cache:
            cache[section] = her2st(section, root=her2st_dir)
        return cache[section].copy()

    return load


@pytest.fixture(scope="session")
def text_embed():
    """Sentence embedding function of the default MiniLM text encoder (L2-normalised rows)."""
    from omnist.model._omnist import text_encoder
    from omnist.nn.text import DEFAULT_TEXT_ENCODER

    return text_encoder(DEFAULT_TEXT_ENCODER).embed


@pytest.fixture(scope="session")
def make_small_config():
    """Return a function that builds a model configuration small enough to train in seconds on two CPU cores."""
    from omnist.model import OmniSTConfig

    def make():
        return OmniSTConfig(d_model=32, n_layers=1, n_heads=2, image_width=8)

    return make
