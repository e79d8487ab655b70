"""Convert a SpatialData table with its spots and H&E image to an AnnData in the scanpy/squidpy layout."""

from __future__ import annotations

import logging

import dask.array as da
import numpy as np
from anndata import AnnData
from PIL import Image

from omnist.data.image import to_uint8_rgb

logger = logging.getLogger(__name__)

HIRES_MAX_SIDE = 2000
"""Longer side of the hires thumbnail in px, as in Space Ranger's ``tissue_hires_image.png``."""


def from_spatialdata(
    sdata,
    table_key: str,
    image_key: str | None = None,
    *,
    scale: str | None = None,
    library_id: str | None = None,
    coordinate_system: str | None = None,
    spot_diameter_um: float | None = None,
) -> AnnData:
    """Copy a SpatialData table to an AnnData with spot positions in image pixels and the image in ``uns``.

    The table must annotate one or more shapes elements (circles or polygons) through its
    ``spatialdata_attrs`` region, region key and instance key. Spot centres are carried from each shapes
    element through the coordinate system it shares with the image into the image's pixel coordinates.

    Parameters
    ----------
    sdata
        A :class:`spatialdata.SpatialData`.
    table_key
        Key of the table in ``sdata.tables``.
    image_key
        Key of the H&E image in ``sdata.images``. Without an image, ``obsm["spatial"]`` is in the units of
        ``coordinate_system`` and ``uns["spatial"][library_id]`` has no ``images`` entry.
    scale
        Pyramid level of a multiscale image (``"scale0"``, ``"scale1"``, …) whose pixels ``obsm["spatial"]``
        refers to. Defaults to ``"scale0"``, the full resolution.
    library_id
        Key under ``uns["spatial"]``. Defaults to ``image_key``, or to ``table_key`` without an image.
    coordinate_system
        Coordinate system that links the shapes to the image. Defaults to ``"global"`` when every element
        has it, otherwise to the first shared one in alphabetical order.
    spot_diameter_um
        Spot diameter in µm (55.0 for Visium). When given, ``metadata`` gains ``"microns_per_pixel"`` and
        ``"spot_diameter_um"``.

    Returns
    -------
    A copy of the table with:

    - ``obsm["spatial"]``: spot centres ``(x, y)`` in pixels of the image at ``scale`` (float64);
    - ``uns["spatial"][library_id]["images"]["hires"]``: uint8 RGB thumbnail, longer side at most 2,000 px,
      for :func:`scanpy.pl.spatial` and :func:`squidpy.pl.spatial_scatter`;
    - ``uns["spatial"][library_id]["images"]["fullres"]``: the image at ``scale`` as a lazy dask array,
      channels last (y, x, c), native dtype, in the pixel frame of ``obsm["spatial"]``. Patch extraction
      reads from it chunk by chunk. :meth:`anndata.AnnData.write_h5ad` writes it in full (anndata 0.12),
      and :func:`anndata.read_h5ad` loads it back as a numpy array. Delete this entry before writing a large
      image. ``metadata`` still names where the image came from;
    - ``uns["spatial"][library_id]["scalefactors"]``: ``tissue_hires_scalef`` (hires px per ``fullres`` px)
      and ``spot_diameter_fullres`` (median spot diameter in ``fullres`` px: twice the circle radius, or the
      diameter of the circle with the polygon's area);
    - ``uns["spatial"][library_id]["metadata"]``: ``coordinate_system``, ``source_image_key`` and
      ``source_image_scale`` (str), ``source_spatialdata_path`` (str, when ``sdata`` is backed by a zarr
      store), and ``microns_per_pixel`` and ``spot_diameter_um`` (float, when ``spot_diameter_um`` is given).

    Raises
    ------
    ValueError
        If a key is not in ``sdata``, the table annotates an element that is not a shapes element, a table
        row has no shape, the elements share no coordinate system, or ``scale`` is not a level of the image.

    Examples
    --------
    >>> sdata = spatialdata.read_zarr("visium.zarr")
    >>> adata = omnist.datasets.from_spatialdata(sdata, "table", "he_image", spot_diameter_um=55.0)
    >>> sc.pl.spatial(adata, color="leiden")
    """
    from spatialdata.models import get_table_keys

    if table_key not in sdata.tables:
        raise ValueError(f"table {table_key!r} not found; tables: {', '.join(sdata.tables) or 'none'}")
    table = sdata.tables[table_key]
    regions, region_key, instance_key = get_table_keys(table)
    regions = [regions] if isinstance(regions, str) else list(regions)
    for region in regions:
        if region not in sdata.shapes:
            raise ValueError(
                f"table {table_key!r} annotates {region!r}, which is not a shapes element; "
                f"shapes elements: {', '.join(sdata.shapes) or 'none'}"
            )
    if image_key is not None and image_key not in sdata.images:
        raise ValueError(f"image {image_key!r} not found; images: {', '.join(sdata.images) or 'none'}")

    image = sdata.images[image_key] if image_key is not None else None
    elements = [sdata.shapes[region] for region in regions] + ([image] if image is not None else [])
    coordinate_system = _shared_coordinate_system(elements, coordinate_system)
    library_id = library_id or image_key or table_key
    logger.info("converting table %r of SpatialData to AnnData (library_id %r)", table_key, library_id)

    to_pixels = np.eye(3)
    fullres = None
    if image is not None:
        fullres, level_scale, scale = _select_level(image, scale)
        to_pixels = np.diag([level_scale[0], level_scale[1], 1.0]) @ np.linalg.inv(_affine_xy(image, coordinate_system))

    adata = table.copy()
    spatial = np.full((adata.n_obs, 2), np.nan)
    diameters = []
    for region in regions:
        shapes = sdata.shapes[region]
        transform = to_pixels @ _affine_xy(shapes, coordinate_system)
        rows = np.flatnonzero((adata.obs[region_key].astype(str) == region).to_numpy())
        instances = adata.obs[instance_key].to_numpy()[rows]
        missing = ~np.isin(instances, shapes.index.to_numpy())
        if missing.any():
            raise ValueError(
                f"{int(missing.sum())} rows of table {table_key!r} have no shape in {region!r}, for example "
                f"instance {instances[missing][0]!r}"
            )
        geometry = shapes.loc[instances]
        centroids = geometry.geometry.centroid
        xy = np.column_stack([centroids.x.to_numpy(), centroids.y.to_numpy(), np.ones(len(rows))])
        spatial[rows] = (xy @ transform.T)[:, :2]
        diameters.append(_diameters(geometry) * np.sqrt(abs(np.linalg.det(transform[:2, :2]))))
    adata.obsm["spatial"] = spatial

    spot_diameter = float(np.median(np.concatenate(diameters)))
    library = {
        "scalefactors": {"spot_diameter_fullres": spot_diameter},
        "metadata": {"coordinate_system": coordinate_system},
    }
    if fullres is not None:
        hires = _thumbnail(fullres, HIRES_MAX_SIDE)
        library["images"] = {"hires": hires, "fullres": fullres}
        library["scalefactors"]["tissue_hires_scalef"] = hires.shape[1] / fullres.shape[1]
        library["metadata"]["source_image_key"] = image_key
        library["metadata"]["source_image_scale"] = scale
        if sdata.path is not None:
            library["metadata"]["source_spatialdata_path"] = str(sdata.path)
    if spot_diameter_um is not None:
        library["metadata"]["spot_diameter_um"] = float(spot_diameter_um)
        library["metadata"]["microns_per_pixel"] = float(spot_diameter_um) / spot_diameter
    adata.uns["spatial"] = {library_id: library}

    logger.info(
        "converted %d spots in coordinate system %r, spot diameter %.1f px",
        adata.n_obs,
        coordinate_system,
        spot_diameter,
    )
    return adata


def _shared_coordinate_system(elements: list, requested: str | None) -> str:
    from spatialdata.transformations import get_transformation

    shared = set.intersection(*(set(get_transformation(element, get_all=True)) for element in elements))
    if requested is not None:
        if requested not in shared:
            raise ValueError(
                f"coordinate system {requested!r} is not shared by the table's shapes and the image; "
                f"shared: {', '.join(sorted(shared)) or 'none'}"
            )
        return requested
    if not shared:
        raise ValueError("the table's shapes and the image share no coordinate system")
    return "global" if "global" in shared else sorted(shared)[0]


def _affine_xy(element, coordinate_system: str) -> np.ndarray:
    """Return the 3 x 3 affine matrix from the element's intrinsic ``(x, y)`` to the coordinate system."""
    from spatialdata.transformations import get_transformation

    transformation = get_transformation(element, to_coordinate_system=coordinate_system)
    return np.asarray(transformation.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), dtype=float)


def _select_level(image, scale: str | None) -> tuple[da.Array, tuple[float, float], str]:
    """Return the image level as a lazy (y, x, c) array, its (x, y) size relative to scale0, and its name."""
    from xarray import DataTree

    if isinstance(image, DataTree):
        levels = list(image.children)
        scale = scale or levels[0]
        if scale not in levels:
            raise ValueError(f"scale {scale!r} is not a level of the image; levels: {', '.join(levels)}")
        full = next(iter(image[levels[0]].dataset.data_vars.values()))
        level = next(iter(image[scale].dataset.data_vars.values()))
    else:
        if scale not in (None, "scale0"):
            raise ValueError(f"scale {scale!r} is not a level of the image, which has one level: scale0")
        scale = "scale0"
        full = level = image

    array = level.transpose("y", "x", "c").data
    array = array if isinstance(array, da.Array) else da.from_array(array)
    level_scale = (level.sizes["x"] / full.sizes["x"], level.sizes["y"] / full.sizes["y"])
    return array, level_scale, scale


def _diameters(shapes) -> np.ndarray:
    if "radius" in shapes.columns:
        return 2.0 * shapes["radius"].to_numpy(dtype=float)
    return 2.0 * np.sqrt(shapes.geometry.area.to_numpy(dtype=float) / np.pi)


def _thumbnail(image: da.Array, max_side: int) -> np.ndarray:
    """Downscale a lazy (y, x, c) image to uint8 RGB with the longer side at most ``max_side`` px.

    Block means over ``factor x factor`` pixels reduce the image chunk by chunk before the exact resize,
    so memory use grows with the dask chunk size, not with the image size.
    """
    factor = max(1, max(image.shape[:2]) // max_side)
    if factor > 1:
        reduced = da.coarsen(np.mean, image, {0: factor, 1: factor}, trim_excess=True).astype(image.dtype)
    else:
        reduced = image
    thumbnail = Image.fromarray(to_uint8_rgb(np.asarray(reduced.compute())))

    # The thumbnail keeps the image's aspect ratio, so ``tissue_hires_scalef`` holds for x and y.
    resize = max_side / max(image.shape[:2])
    if resize < 1:
        size = (max(1, round(image.shape[1] * resize)), max(1, round(image.shape[0] * resize)))
        thumbnail = thumbnail.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(thumbnail)
