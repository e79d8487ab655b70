"""Drawing helpers shared by the plots: the H&E image with its scale factor, spot circles, colours, output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scanpy as sc
from anndata import AnnData
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from scipy.spatial import cKDTree

from omnist.data.spatial import get_library_id

# Margin around the spots when no crop_coord is given, in spot pitches.
VIEW_MARGIN_PITCHES = 1.0


@dataclass
class Tissue:
    """Spot positions and sizes in the pixels of the drawn image (or of ``obsm["spatial"]`` without one)."""

    centres: np.ndarray
    radius: float
    pitch: float
    image: np.ndarray | None
    library_id: str | None
    scale: float
    """Image pixels per full-resolution pixel (1 without an image)."""


def tissue(
    adata: AnnData,
    *,
    library_id: str | None,
    img_key: str | None,
    size: float = 1.0,
) -> Tissue:
    """Return the image ``img_key`` and the spots scaled to its pixels; ``img_key=None`` keeps the spot units.

    Raises
    ------
    KeyError
        If ``obsm["spatial"]`` is missing, or ``img_key`` is given and
        ``uns["spatial"][library_id]["images"][img_key]`` is missing.
    """
    if "spatial" not in adata.obsm:
        raise KeyError("adata.obsm['spatial'] is missing: the plot needs spot coordinates.")
    coordinates = np.asarray(adata.obsm["spatial"], dtype=np.float64)[:, :2]
    image, scale = None, 1.0
    libraries = adata.uns.get("spatial", {}) or {}
    if img_key is not None:
        if not libraries:
            raise KeyError(
                f"No H&E image: adata.uns['spatial'][library_id]['images'][{img_key!r}] is missing because adata "
                "has no uns['spatial']. Load a section with an image, or pass img_key=None to draw the spots only."
            )
        library_id = get_library_id(adata, library_id)
        library = libraries[library_id]
        images = library.get("images", {}) or {}
        if img_key not in images:
            other = f"pass img_key={sorted(images)[0]!r}, " if images else "load a section with an image, "
            raise KeyError(
                f"No H&E image: adata.uns['spatial'][{library_id!r}]['images'][{img_key!r}] is missing "
                f"(images present: {sorted(images)}): {other}or pass img_key=None to draw the spots only."
            )
        image = np.asarray(images[img_key])
        scale = _image_scale(library, library_id, img_key)
    elif libraries:
        library_id = get_library_id(adata, library_id)

    centres = coordinates * scale
    pitch = _spot_pitch(centres)
    diameter = None
    if library_id is not None:
        diameter = (libraries[library_id].get("scalefactors", {}) or {}).get("spot_diameter_fullres")
    radius = 0.5 * float(diameter) * scale if diameter else 0.5 * pitch
    return Tissue(centres=centres, radius=radius * size, pitch=pitch, image=image, library_id=library_id, scale=scale)


def _image_scale(library: Mapping, library_id: str, img_key: str) -> float:
    if img_key == "fullres":
        return 1.0
    scalefactors = library.get("scalefactors", {}) or {}
    key = f"tissue_{img_key}_scalef"
    if key not in scalefactors:
        raise KeyError(f"adata.uns['spatial'][{library_id!r}]['scalefactors'][{key!r}] is missing.")
    return float(scalefactors[key])


def _spot_pitch(centres: np.ndarray) -> float:
    """Return the median distance from a spot to its nearest neighbour (1 for fewer than 2 spots)."""
    finite = centres[np.isfinite(centres).all(axis=1)]
    if len(finite) < 2:
        return 1.0
    distances, _ = cKDTree(finite).query(finite, k=2)
    pitch = float(np.median(distances[:, 1]))
    return pitch if pitch > 0 else 1.0


def draw_image(ax: Axes, view: Tissue) -> None:
    """Draw the image, if there is one, in its own pixel frame."""
    if view.image is not None:
        ax.imshow(view.image, origin="upper", interpolation="antialiased")


def set_view(ax: Axes, view: Tissue, crop_coord: Sequence[float] | None) -> None:
    """Limit the view to ``crop_coord``, else to the spots, and hide the ticks.

    ``crop_coord`` is ``(left, right, top, bottom)`` in full-resolution pixels, as in :func:`scanpy.pl.spatial`.
    Call it after drawing, because ``imshow`` resets the limits.
    """
    if crop_coord is not None:
        if len(crop_coord) != 4:
            raise ValueError(
                f"Invalid crop_coord={tuple(crop_coord)}: pass four values (left, right, top, bottom) in "
                "full-resolution pixels."
            )
        left, right, top, bottom = (float(value) * view.scale for value in crop_coord)
    else:
        margin = VIEW_MARGIN_PITCHES * view.pitch + view.radius
        finite = view.centres[np.isfinite(view.centres).all(axis=1)]
        left, top = finite.min(axis=0) - margin
        right, bottom = finite.max(axis=0) + margin
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def spot_circles(ax: Axes, centres: np.ndarray, radius: float, **kwargs) -> PatchCollection:
    """Add circles of ``radius`` (data units) at ``centres`` as one collection; ``kwargs`` go to the collection."""
    circles = [Circle((x, y), radius) for x, y in centres]
    collection = PatchCollection(circles, **kwargs)
    ax.add_collection(collection)
    return collection


def category_colour(
    adata: AnnData, groupby: str, group: str, palette: str | Sequence | Mapping | None
) -> tuple[float, float, float, float]:
    """Return the colour of ``group``: from ``palette``, else ``uns[f"{groupby}_colors"]``, else scanpy's default.

    ``palette`` is a mapping from category to colour, a sequence of colours in category order, or the name of
    a matplotlib colormap.
    """
    categories = [str(value) for value in adata.obs[groupby].astype("category").cat.categories]
    position = categories.index(group) if group in categories else 0
    if isinstance(palette, Mapping):
        if group not in palette:
            raise KeyError(f"palette has no colour for {group!r}; it names {sorted(map(str, palette))}.")
        return mcolors.to_rgba(palette[group])
    if isinstance(palette, str):
        colormap = plt.get_cmap(palette)
        return colormap(position / max(len(categories) - 1, 1))
    if palette is not None:
        colours = list(palette)
        if not colours:
            raise ValueError("palette is empty: pass colours, a mapping of category to colour, or None.")
        return mcolors.to_rgba(colours[position % len(colours)])
    stored = adata.uns.get(f"{groupby}_colors")
    if stored is not None and len(stored) == len(categories):
        return mcolors.to_rgba(stored[position])
    if len(categories) <= 20:
        default = sc.pl.palettes.default_20
    elif len(categories) <= 28:
        default = sc.pl.palettes.default_28
    else:
        default = sc.pl.palettes.default_102
    return mcolors.to_rgba(default[position % len(default)])


def finish(figure: Figure, result, show: bool | None, save: str | Path | None):
    """Save the figure if asked, then show it (returning None) or return ``result``."""
    if save is not None:
        figure.savefig(save, dpi=150, bbox_inches="tight")
    if show is None or show:
        plt.show()
        return None
    return result
