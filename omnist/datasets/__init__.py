"""Loaders for public spatial transcriptomics data: her2st, Space Ranger output and SpatialData objects."""

from omnist.datasets._her2st import her2st, her2st_sections
from omnist.datasets._spatialdata import from_spatialdata
from omnist.datasets._visium import visium

__all__ = ["from_spatialdata", "her2st", "her2st_sections", "visium"]
