"""Locate the library, the H&E image and the pixel size of an AnnData laid out as scanpy and squidpy expect."""

from __future__ import annotations

from pathlib import Path

from anndata import AnnData

from omnist.data.image import ImageSource

# Visium spots are 55 µm across; used when an AnnData carries scalefactors but no pixel size.
VISIUM_SPOT_DIAMETER_UM = 55.0


def get_library_id(adata: AnnData, library_id: str | None = None) -> str:
    """Return ``library_id`` after checking it exists, or the only library of ``uns["spatial"]``."""
    libraries = adata.uns.get("spatial", {})
    if not libraries:
        raise KeyError(
            "adata.uns['spatial'] is missing or empty: load the data with omnist.datasets or scanpy.read_visium "
            "so that the image and scale factors are attached."
        )
    if library_id is None:
        if len(libraries) > 1:
            raise ValueError(f"adata.uns['spatial'] contains several libraries {sorted(libraries)}: pass library_id.")
        return next(iter(libraries))
    if library_id not in libraries:
        raise KeyError(f"library_id {library_id!r} is not in adata.uns['spatial']; available: {sorted(libraries)}.")
    return library_id


def microns_per_pixel(adata: AnnData, library_id: str) -> float:
    """Return the size of one full-resolution pixel in µm.

    Taken from ``uns["spatial"][library_id]["metadata"]["microns_per_pixel"]`` when present, otherwise from
    ``scalefactors["spot_diameter_fullres"]`` and the spot diameter in the metadata (55 µm, the Visium
    diameter, when the metadata does not give one).
    """
    library = adata.uns["spatial"][library_id]
    metadata = library.get("metadata", {}) or {}
    if "microns_per_pixel" in metadata:
        return float(metadata["microns_per_pixel"])
    scalefactors = library.get("scalefactors", {}) or {}
    if "spot_diameter_fullres" not in scalefactors:
        raise KeyError(
            f"adata.uns['spatial'][{library_id!r}] has neither metadata['microns_per_pixel'] nor "
            "scalefactors['spot_diameter_fullres']: add one of them, or pass the patch size in pixels."
        )
    spot_diameter_um = float(metadata.get("spot_diameter_um", VISIUM_SPOT_DIAMETER_UM))
    return spot_diameter_um / float(scalefactors["spot_diameter_fullres"])


def spot_diameter_um(adata: AnnData, library_id: str) -> float:
    """Return the spot diameter in µm (from the metadata, else the Visium 55 µm)."""
    metadata = adata.uns["spatial"][library_id].get("metadata", {}) or {}
    return float(metadata.get("spot_diameter_um", VISIUM_SPOT_DIAMETER_UM))


def image_source(adata: AnnData, library_id: str) -> ImageSource:
    """Return the best image of a library: the full-resolution file when it exists, else the largest array.

    The full-resolution file is ``uns["spatial"][library_id]["metadata"]["source_image_path"]``. Arrays come
    from ``images["fullres"]`` (a lazy array in full-resolution pixels, as :func:`omnist.datasets.from_spatialdata`
    writes it), then ``images["hires"]`` or ``images["lowres"]`` with their ``tissue_*_scalef``.
    """
    library = adata.uns["spatial"][library_id]
    metadata = library.get("metadata", {}) or {}
    path = metadata.get("source_image_path")
    if path and Path(path).is_file():
        return ImageSource(path=Path(path))

    images = library.get("images", {}) or {}
    scalefactors = library.get("scalefactors", {}) or {}
    if "fullres" in images:
        return ImageSource(array=images["fullres"], scale=1.0)
    for resolution in ("hires", "lowres"):
        if resolution in images:
            key = f"tissue_{resolution}_scalef"
            if key not in scalefactors:
                raise KeyError(f"adata.uns['spatial'][{library_id!r}]['scalefactors'] lacks {key!r}.")
            return ImageSource(array=images[resolution], scale=float(scalefactors[key]))
    missing = f" (the full-resolution file {path} does not exist)" if path else ""
    raise KeyError(
        f"No H&E image for library {library_id!r}: adata.uns['spatial'][{library_id!r}]['images'] is empty"
        f"{missing}. Load a section with an image, or set metadata['source_image_path']."
    )
