"""Tests of patch extraction and image reading on the real data under ``OMNIST_DATA_DIR``."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import dask.array as da
import numpy as np
import pytest
import tifffile
from anndata.tests.helpers import assert_equal
from PIL import Image

import omnist
from omnist.data.image import ImageSource, to_uint8_rgb
from omnist.datasets import visium

N_C2_SPOTS = 187
PATCH_PARAMS = {"size_um", "size_px", "out_px", "library_id", "key"}
# A pixel counts as tissue when its grey value is below this. Glass in the corners of the C2 image is about 240.
TISSUE_GREY = 220


@pytest.fixture(scope="module")
def c2_patches(load_her2st) -> ad.AnnData:
    """Section C2 with default patches read from the full-resolution JPEG."""
    adata = load_her2st("C2")
    omnist.pp.extract_patches(adata, progress=False)
    return adata


@pytest.fixture(scope="module")
def c2_hires_patches(load_her2st) -> ad.AnnData:
    """Section C2 with default patches read from the 2,000 px hires image instead of the JPEG."""
    adata = load_her2st("C2")
    del adata.uns["spatial"]["C2"]["metadata"]["source_image_path"]
    omnist.pp.extract_patches(adata, progress=False)
    return adata


@pytest.fixture(scope="module")
def tiny(data_dir: Path) -> ad.AnnData:
    return visium(data_dir / "visium_tiny")


def _library(adata: ad.AnnData) -> dict:
    (library_id,) = adata.uns["spatial"]
    return adata.uns["spatial"][library_id]


def _grey(patches: np.ndarray) -> np.ndarray:
    return patches.astype(np.float64).mean(axis=-1)


def _darkest_spot(adata: ad.AnnData) -> int:
    return int(np.argmin(_grey(adata.obsm["omnist_patches"]).mean(axis=(1, 2))))


def _hires_only(adata: ad.AnnData, spots: list[int], *, left: int = 0, top: int = 0) -> ad.AnnData:
    """Return the spots with C2's hires image cropped by ``left`` columns and ``top`` rows, positions shifted."""
    library = adata.uns["spatial"]["C2"]
    scale = library["scalefactors"]["tissue_hires_scalef"]
    spatial = adata.obsm["spatial"][spots] - np.array([left, top]) / scale
    return ad.AnnData(
        obs=adata.obs.iloc[spots][[]],
        obsm={"spatial": spatial},
        uns={
            "spatial": {
                "C2": {
                    "images": {"hires": library["images"]["hires"][top:, left:].copy()},
                    "scalefactors": dict(library["scalefactors"]),
                    "metadata": {
                        "microns_per_pixel": library["metadata"]["microns_per_pixel"],
                        "spot_diameter_um": library["metadata"]["spot_diameter_um"],
                    },
                }
            }
        },
    )


def _as_fullres(adata: ad.AnnData, image: object) -> ad.AnnData:
    """Return C2's spots addressed in pixels of its hires image, with ``image`` as the full-resolution image."""
    library = adata.uns["spatial"]["C2"]
    scale = library["scalefactors"]["tissue_hires_scalef"]
    metadata = {"microns_per_pixel": library["metadata"]["microns_per_pixel"] / scale, "spot_diameter_um": 100.0}
    images = {}
    if isinstance(image, Path):
        metadata["source_image_path"] = str(image)
    else:
        images["fullres"] = image
    return ad.AnnData(
        obs=adata.obs[[]],
        obsm={"spatial": adata.obsm["spatial"] * scale},
        uns={"spatial": {"C2": {"images": images, "scalefactors": {}, "metadata": metadata}}},
    )


# Shape, dtype and recorded parameters


def test_extract_patches_shape(c2_patches):
    patches = c2_patches.obsm["omnist_patches"]
    assert patches.shape == (N_C2_SPOTS, 64, 64, 3)
    assert patches.dtype == np.uint8


def test_extract_patches_params_recorded(c2_patches):
    params = c2_patches.uns["omnist"]["patches"]
    assert set(params) == PATCH_PARAMS
    assert params["out_px"] == 64
    assert params["library_id"] == "C2"
    assert params["key"] == "omnist_patches"
    # The default window is 1.5 spot diameters, and her2st spots are 100 µm across.
    assert params["size_um"] == pytest.approx(150.0)


def test_extract_patches_size_um_matches_size_px(c2_patches):
    params = c2_patches.uns["omnist"]["patches"]
    microns_per_pixel = c2_patches.uns["spatial"]["C2"]["metadata"]["microns_per_pixel"]
    assert params["size_px"] == pytest.approx(params["size_um"] / microns_per_pixel)


def test_extract_patches_size_px_sets_size_um(load_her2st):
    adata = load_her2st("C2")
    omnist.pp.extract_patches(adata, size_px=300, progress=False)
    params = adata.uns["omnist"]["patches"]
    microns_per_pixel = adata.uns["spatial"]["C2"]["metadata"]["microns_per_pixel"]
    assert params["size_px"] == pytest.approx(300.0)
    assert params["size_um"] == pytest.approx(300.0 * microns_per_pixel)


def test_extract_patches_size_um_sets_size_px(load_her2st):
    adata = load_her2st("C2")
    omnist.pp.extract_patches(adata, size_um=55.0, progress=False)
    params = adata.uns["omnist"]["patches"]
    microns_per_pixel = adata.uns["spatial"]["C2"]["metadata"]["microns_per_pixel"]
    assert params["size_um"] == pytest.approx(55.0)
    assert params["size_px"] == pytest.approx(55.0 / microns_per_pixel)


def test_extract_patches_both_sizes_raises(load_her2st):
    adata = load_her2st("C2")
    with pytest.raises(ValueError, match="size_um or size_px, not both"):
        omnist.pp.extract_patches(adata, size_um=150, size_px=200, progress=False)
    assert "omnist_patches" not in adata.obsm


def test_extract_patches_out_px(load_her2st):
    adata = load_her2st("C2")
    omnist.pp.extract_patches(adata, out_px=32, progress=False)
    assert adata.obsm["omnist_patches"].shape == (N_C2_SPOTS, 32, 32, 3)
    assert adata.uns["omnist"]["patches"]["out_px"] == 32


def test_extract_patches_out_px_too_small_raises(load_her2st):
    with pytest.raises(ValueError, match="out_px=4"):
        omnist.pp.extract_patches(load_her2st("C2"), out_px=4, progress=False)


def test_extract_patches_key_added(load_her2st):
    adata = load_her2st("C2")
    omnist.pp.extract_patches(adata, key_added="he_patches", progress=False)
    assert adata.obsm["he_patches"].shape == (N_C2_SPOTS, 64, 64, 3)
    assert "omnist_patches" not in adata.obsm
    assert adata.uns["omnist"]["patches"]["key"] == "he_patches"


def test_extract_patches_show_tissue(c2_patches):
    grey = _grey(c2_patches.obsm["omnist_patches"])
    tissue_fraction = (grey < TISSUE_GREY).mean(axis=(1, 2))
    # Every her2st spot lies under tissue, so most of each window is stained.
    assert np.median(tissue_fraction) > 0.5
    assert grey.std(axis=(1, 2)).min() > 1.0
    assert not np.array_equal(c2_patches.obsm["omnist_patches"][0], c2_patches.obsm["omnist_patches"][1])


def test_extract_patches_inplace_returns_none(load_her2st):
    assert omnist.pp.extract_patches(load_her2st("C2"), progress=False) is None


def test_extract_patches_copy_leaves_input(load_her2st, c2_patches):
    adata = load_her2st("C2")
    before = adata.copy()
    result = omnist.pp.extract_patches(adata, copy=True, progress=False)
    assert_equal(adata, before)
    assert result is not adata
    np.testing.assert_array_equal(result.obsm["omnist_patches"], c2_patches.obsm["omnist_patches"])
    assert result.uns["omnist"]["patches"] == c2_patches.uns["omnist"]["patches"]


def test_extract_patches_keeps_other_omnist_entries(load_her2st):
    adata = load_her2st("C2")
    adata.uns["omnist"] = {"instructions": "kept"}
    omnist.pp.extract_patches(adata, progress=False)
    assert adata.uns["omnist"]["instructions"] == "kept"
    assert set(adata.uns["omnist"]["patches"]) == PATCH_PARAMS


# Full-resolution JPEG against the hires image


def test_extract_patches_jpeg_matches_hires_colour(c2_patches, c2_hires_patches):
    # Measured on C2: the per-spot mean colour differs by at most 1.8 grey levels between the two sources.
    jpeg = c2_patches.obsm["omnist_patches"].astype(np.float64).mean(axis=(1, 2))
    hires = c2_hires_patches.obsm["omnist_patches"].astype(np.float64).mean(axis=(1, 2))
    assert np.abs(jpeg - hires).max() < 5.0


def test_extract_patches_jpeg_matches_hires_layout(c2_patches, c2_hires_patches):
    # Measured on C2: the median pixel correlation is 0.92, and 0.50 when the hires windows shift by 2 px (7 µm).
    jpeg = _grey(c2_patches.obsm["omnist_patches"])
    hires = _grey(c2_hires_patches.obsm["omnist_patches"])
    correlations = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(jpeg, hires, strict=True)]
    assert np.median(correlations) > 0.8


def test_extract_patches_hires_params_match_jpeg(c2_patches, c2_hires_patches):
    assert c2_hires_patches.uns["omnist"]["patches"] == c2_patches.uns["omnist"]["patches"]


# Image borders and spots outside the image


@pytest.mark.parametrize("edge", ["left", "top"])
def test_extract_patches_border_padding(c2_patches, c2_hires_patches, edge):
    spot = _darkest_spot(c2_hires_patches)
    library = c2_patches.uns["spatial"]["C2"]
    scale = library["scalefactors"]["tissue_hires_scalef"]
    x, y = np.floor(c2_patches.obsm["spatial"][spot] * scale).astype(int)
    # Crop the hires image so that the spot centre lies on its left or top edge.
    cropped = _hires_only(c2_patches, [spot], left=x if edge == "left" else 0, top=y if edge == "top" else 0)
    reference = _hires_only(c2_patches, [spot])
    omnist.pp.extract_patches(cropped, progress=False)
    omnist.pp.extract_patches(reference, progress=False)

    patch = cropped.obsm["omnist_patches"][0]
    expected = reference.obsm["omnist_patches"][0]
    if edge == "top":
        patch, expected = patch.transpose(1, 0, 2), expected.transpose(1, 0, 2)
    # Half the window lies beyond the border. Columns 24 and 40 keep clear of the seam that bilinear
    # upsampling blends.
    assert np.all(patch[:, :24] == 255)
    assert _grey(patch[:, 40:]).mean() < TISSUE_GREY
    np.testing.assert_array_equal(patch[:, 40:], expected[:, 40:])


@pytest.mark.parametrize(
    ("x", "y"),
    [(-500.0, None), (1e6, None), (None, -1.0), (np.nan, None)],
    ids=["left", "right", "top", "nan"],
)
def test_extract_patches_spot_outside_raises(load_her2st, x, y):
    adata = load_her2st("C2")
    if x is not None:
        adata.obsm["spatial"][7, 0] = x
    if y is not None:
        adata.obsm["spatial"][7, 1] = y
    with pytest.raises(ValueError, match="1 spots lie outside") as error:
        omnist.pp.extract_patches(adata, progress=False)
    assert adata.obs_names[7] in str(error.value)
    assert "'C2'" in str(error.value)
    assert "omnist_patches" not in adata.obsm


def test_extract_patches_outside_count(load_her2st):
    adata = load_her2st("C2")
    adata.obsm["spatial"][:3, 0] = -10.0
    with pytest.raises(ValueError, match="3 spots lie outside") as error:
        omnist.pp.extract_patches(adata, progress=False)
    for name in adata.obs_names[:3]:
        assert name in str(error.value)


def test_extract_patches_edge_spot_allowed(load_her2st):
    adata = load_her2st("C2")
    height, width = ImageSource(path=Path(adata.uns["spatial"]["C2"]["metadata"]["source_image_path"])).shape
    adata.obsm["spatial"][0] = [width - 1, height - 1]
    omnist.pp.extract_patches(adata, progress=False)
    patch = adata.obsm["omnist_patches"][0]
    # The spot sits on the bottom-right corner, so the right and bottom halves are padding.
    assert np.all(patch[40:, :] == 255)
    assert np.all(patch[:, 40:] == 255)


# Missing inputs


def test_extract_patches_missing_spatial_raises(load_her2st):
    adata = load_her2st("C2")
    del adata.obsm["spatial"]
    with pytest.raises(KeyError, match=r"obsm\['spatial'\] is missing"):
        omnist.pp.extract_patches(adata, progress=False)


def test_extract_patches_missing_uns_spatial_raises(load_her2st):
    adata = load_her2st("C2")
    del adata.uns["spatial"]
    with pytest.raises(KeyError, match=r"uns\['spatial'\] is missing"):
        omnist.pp.extract_patches(adata, progress=False)


def test_extract_patches_section_without_image_raises(load_her2st):
    adata = load_her2st("A1")
    with pytest.raises(KeyError, match="No H&E image for library 'A1'"):
        omnist.pp.extract_patches(adata, progress=False)
    assert "omnist_patches" not in adata.obsm


def test_extract_patches_missing_image_file_raises(load_her2st, tmp_path):
    adata = load_her2st("C2")
    library = adata.uns["spatial"]["C2"]
    missing = tmp_path / "moved.jpg"
    library["metadata"]["source_image_path"] = str(missing)
    del library["images"]
    with pytest.raises(KeyError, match="does not exist") as error:
        omnist.pp.extract_patches(adata, progress=False)
    assert str(missing) in str(error.value)


def test_extract_patches_missing_scalefactor_raises(load_her2st):
    adata = load_her2st("C2")
    library = adata.uns["spatial"]["C2"]
    del library["metadata"]["source_image_path"]
    del library["scalefactors"]["tissue_hires_scalef"]
    with pytest.raises(KeyError, match="tissue_hires_scalef"):
        omnist.pp.extract_patches(adata, progress=False)


def test_extract_patches_zero_spots_raises(load_her2st):
    adata = load_her2st("C2")[:0].copy()
    with pytest.raises(ValueError, match="no spots"):
        omnist.pp.extract_patches(adata, progress=False)


def test_extract_patches_several_libraries(load_her2st, c2_patches):
    adata = load_her2st("C2")
    adata.uns["spatial"]["other"] = adata.uns["spatial"]["C2"]
    with pytest.raises(ValueError, match="pass library_id"):
        omnist.pp.extract_patches(adata, progress=False)
    with pytest.raises(KeyError, match="'C9' is not in"):
        omnist.pp.extract_patches(adata, library_id="C9", progress=False)
    omnist.pp.extract_patches(adata, library_id="C2", progress=False)
    np.testing.assert_array_equal(adata.obsm["omnist_patches"], c2_patches.obsm["omnist_patches"])


# Visium (hires and lowres images only)


def test_extract_patches_visium_params(tiny):
    adata = tiny.copy()
    omnist.pp.extract_patches(adata, progress=False)
    (library_id,) = adata.uns["spatial"]
    params = adata.uns["omnist"]["patches"]
    assert adata.obsm["omnist_patches"].shape == (100, 64, 64, 3)
    assert adata.obsm["omnist_patches"].dtype == np.uint8
    assert params["library_id"] == library_id
    # 1.5 Visium spot diameters of 55 µm.
    assert params["size_um"] == pytest.approx(82.5)
    assert params["size_px"] == pytest.approx(82.5 / _library(adata)["metadata"]["microns_per_pixel"])


def test_extract_patches_visium_prefers_hires(tiny):
    # The hires PNG of visium_tiny is blank (every pixel black, alpha 255), so hires patches are all zero.
    assert not _library(tiny)["images"]["hires"][..., :3].any()
    adata = tiny.copy()
    omnist.pp.extract_patches(adata, progress=False)
    assert not adata.obsm["omnist_patches"].any()


def test_extract_patches_visium_lowres(tiny):
    adata = tiny.copy()
    del _library(adata)["images"]["hires"]
    omnist.pp.extract_patches(adata, progress=False)
    patches = adata.obsm["omnist_patches"]
    grey = _grey(patches)
    assert patches.shape == (100, 64, 64, 3)
    # The lowres image is real H&E with channel values from 35 to 193.
    assert grey.mean() > 35
    assert grey.mean() < 200
    assert grey.mean(axis=(1, 2)).std() > 1.0


def test_extract_patches_visium_lowres_matches_image(tiny):
    adata = tiny.copy()
    library = _library(adata)
    del library["images"]["hires"]
    size_px = 8 / library["scalefactors"]["tissue_lowres_scalef"]
    omnist.pp.extract_patches(adata, out_px=8, size_px=size_px, progress=False)
    # An 8 px window at lowres scale is copied without resampling, so its centre pixel is the image pixel.
    lowres = library["images"]["lowres"]
    x, y = np.round(adata.obsm["spatial"][0] * library["scalefactors"]["tissue_lowres_scalef"]).astype(int)
    patch = adata.obsm["omnist_patches"][0]
    np.testing.assert_allclose(patch[4, 4].astype(int), lowres[y, x].astype(int), atol=3)


# ImageSource and other image formats


def test_image_source_shape_matches_file(c2_patches):
    path = Path(c2_patches.uns["spatial"]["C2"]["metadata"]["source_image_path"])
    with Image.open(path) as image:
        width, height = image.size
    assert ImageSource(path=path).shape == (height, width)


@pytest.mark.parametrize(("downscale", "expected_scale"), [(3, 1 / 2), (5, 1 / 4), (8, 1 / 8), (100, 1 / 8)])
def test_image_source_jpeg_reduced_decode(c2_patches, downscale, expected_scale):
    path = Path(c2_patches.uns["spatial"]["C2"]["metadata"]["source_image_path"])
    source = ImageSource(path=path)
    height, width = source.shape
    array, scale = source.pixels(downscale=downscale)
    assert array.shape[0] < height
    assert array.shape[1] < width
    assert array.shape[2] == 3
    assert scale == pytest.approx(expected_scale, rel=0.01)
    assert scale == pytest.approx(array.shape[1] / width)


def test_image_source_array_scale(c2_patches):
    library = c2_patches.uns["spatial"]["C2"]
    hires = library["images"]["hires"]
    scale = library["scalefactors"]["tissue_hires_scalef"]
    source = ImageSource(array=hires, scale=scale)
    full = ImageSource(path=Path(library["metadata"]["source_image_path"])).shape
    assert source.shape[0] == pytest.approx(full[0], rel=0.01)
    assert source.shape[1] == pytest.approx(full[1], rel=0.01)
    array, returned_scale = source.pixels(downscale=10)
    assert array is hires
    assert returned_scale == scale


@pytest.mark.parametrize("layout", ["dask", "tiff", "tiff_planar"])
def test_extract_patches_other_sources_match_array(load_her2st, tmp_path, layout):
    adata = load_her2st("C2")
    hires = adata.uns["spatial"]["C2"]["images"]["hires"]
    if layout == "dask":
        image = da.from_array(hires, chunks=(256, 256, 3))
    elif layout == "tiff":
        image = tmp_path / "hires.tif"
        tifffile.imwrite(image, hires, tile=(256, 256))
    else:
        image = tmp_path / "hires_planar.tif"
        tifffile.imwrite(image, np.moveaxis(hires, -1, 0), tile=(256, 256), planarconfig="separate", photometric="rgb")
    expected = _as_fullres(adata, hires)
    actual = _as_fullres(adata, image)
    omnist.pp.extract_patches(expected, progress=False)
    omnist.pp.extract_patches(actual, progress=False)
    np.testing.assert_array_equal(actual.obsm["omnist_patches"], expected.obsm["omnist_patches"])
    assert actual.uns["omnist"]["patches"] == expected.uns["omnist"]["patches"]


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[[0.0, 0.5, 1.0]]]), [0, 127, 255]),
        (np.array([[[0, 32768, 65535]]], dtype=np.uint16), [0, 127, 255]),
        (np.array([[[10, 20, 30, 255]]], dtype=np.uint8), [10, 20, 30]),
        (np.array([[7]], dtype=np.uint8), [7, 7, 7]),
        (np.array([[[0.0, 127.5, 255.0]]]), [0, 127, 255]),
    ],
    ids=["float_unit", "uint16", "rgba", "grey", "float_255"],
)
def test_to_uint8_rgb_conversions(array, expected):
    result = to_uint8_rgb(array)
    assert result.dtype == np.uint8
    assert result.shape == (1, 1, 3)
    assert result[0, 0].tolist() == expected
