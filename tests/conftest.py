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
