"""Preprocessing: patches, spatial graphs and instruction pairs written into AnnData slots."""

from omnist.pp._instructions import build_instructions
from omnist.pp._patches import extract_patches

__all__ = ["build_instructions", "extract_patches"]
