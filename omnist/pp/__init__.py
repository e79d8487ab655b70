"""Preprocessing: patches, spatial graphs and instruction pairs written into AnnData slots."""

from omnist.pp._patches import extract_patches

__all__ = ["extract_patches"]
