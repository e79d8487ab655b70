"""Tests of the her2st, Visium and SpatialData loaders on the real data under ``OMNIST_DATA_DIR``."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import dask.array as da
import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import sparse

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import scanpy as sc  # noqa: E402
import squidpy as sq  # noqa: E402

from omnist.data.image import ImageSource  # noqa: E402
from omnist.datasets import from_spatialdata, her2st, her2st_sections, visium  # noqa: E402
from omnist.datasets._her2st import _match_to_spots, _read_motivation  # noqa: E402

LABELLED_SECTIONS = ["A1", "B1", "C1", "D1", "E1", "F1"]
IMAGE_SECTIONS = ["C2", "C3", "C4", "C5", "C6"]
PATHOLOGY_LABELS = {
    "invasive cancer",
    "cancer in situ",
    "immune infiltrate",
    "breast glands",
    "connective tissue",
    "adipose tissue",
    "undetermined",
}
PROPORTION_COLUMNS = {"major": 8, "minor": 22, "subset": 41}
# Filters the anndata 0.12 FutureWarning about "/" in keys, which the cell type "CAFs MSC/iCAF-like" raises.
SLASH_WARNING = "ignore:Forward slashes:FutureWarning"


@pytest.fixture(scope="module")
def her2st_root(data_dir: Path) -> Path:
    return data_dir / "her2st"


@pytest.fixture(scope="module")
def c2(her2st_root: Path) -> ad.AnnData:
    return her2st("C2", root=her2st_root)


@pytest.fixture(scope="module")
def a1(her2st_root: Path) -> ad.AnnData:
    return her2st("A1", root=her2st_root)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _spotfile(root: Path, section: str) -> pd.DataFrame:
    spotfile = pd.read_csv(root / "data" / "ST-spotfiles" / f"{section}_selection.tsv", sep="\t")
    spotfile.index = spotfile["x"].astype(str) + "x" + spotfile["y"].astype(str)
    return spotfile


def _labels(root: Path, section: str) -> pd.DataFrame:
    return pd.read_csv(root / "data" / "ST-pat" / "lbl" / f"{section}_labeled_coordinates.tsv", sep="\t")


# her2st: counts and positions


def test_her2st_counts_integer_valued(c2):
    assert sparse.issparse(c2.X)
    assert c2.X.format == "csr"
    assert c2.X.nnz > 0
    assert np.all(c2.X.data == np.round(c2.X.data))
    assert c2.X.data.min() >= 0


def test_her2st_names_match_counts_file(c2, her2st_root):
    counts = pd.read_csv(her2st_root / "data" / "ST-cnts" / "C2.tsv.gz", sep="\t", index_col=0, nrows=3)
    spots = pd.read_csv(her2st_root / "data" / "ST-cnts" / "C2.tsv.gz", sep="\t", usecols=[0]).iloc[:, 0]
    assert c2.obs_names.tolist() == spots.astype(str).tolist()
    assert c2.var_names.tolist() == counts.columns.tolist()
    np.testing.assert_array_equal(c2.X[:3].toarray(), counts.to_numpy())


def test_her2st_obs_columns(c2):
    names = c2.obs_names.str.split("x", expand=True).to_frame().astype(int)
    np.testing.assert_array_equal(c2.obs["array_col"].to_numpy(), names[0].to_numpy())
    np.testing.assert_array_equal(c2.obs["array_row"].to_numpy(), names[1].to_numpy())
    assert c2.obs["section"].unique().tolist() == ["C2"]
    assert c2.obs["patient"].unique().tolist() == ["C"]


def test_her2st_spatial_matches_spotfile(c2, her2st_root):
    spotfile = _spotfile(her2st_root, "C2").loc[c2.obs_names]
    np.testing.assert_allclose(c2.obsm["spatial"], spotfile[["pixel_x", "pixel_y"]].to_numpy())


def test_her2st_spatial_within_image(c2):
    path = Path(c2.uns["spatial"]["C2"]["metadata"]["source_image_path"])
    height, width = ImageSource(path=path).shape
    x, y = c2.obsm["spatial"].T
    assert np.all((x >= 0) & (x < width))
    assert np.all((y >= 0) & (y < height))


# her2st: image and scale factors


def test_her2st_hires_image_present(c2):
    library = c2.uns["spatial"]["C2"]
    hires = library["images"]["hires"]
    assert hires.dtype == np.uint8
    assert hires.ndim == 3
    assert hires.shape[2] == 3
    assert max(hires.shape[:2]) == 2000


def test_her2st_scalefactors_consistent(c2):
    library = c2.uns["spatial"]["C2"]
    height, width = ImageSource(path=Path(library["metadata"]["source_image_path"])).shape
    hires_height, hires_width = library["images"]["hires"].shape[:2]
    assert library["scalefactors"]["tissue_hires_scalef"] == pytest.approx(hires_width / width, rel=1e-3)
    assert library["scalefactors"]["tissue_hires_scalef"] == pytest.approx(hires_height / height, rel=1e-2)
    microns_per_pixel = library["metadata"]["microns_per_pixel"]
    assert 0.5 < microns_per_pixel < 1.0
    assert library["scalefactors"]["spot_diameter_fullres"] == pytest.approx(100.0 / microns_per_pixel)
    assert library["metadata"]["spot_diameter_um"] == 100.0


def test_her2st_metadata_path_exists(c2):
    path = Path(c2.uns["spatial"]["C2"]["metadata"]["source_image_path"])
    assert path.is_absolute()
    assert path.is_file()
    assert path.suffix == ".jpg"


def test_her2st_spot_pitch_matches_pixel_size(c2):
    # Spots one array step apart lie 200 µm apart.
    library = c2.uns["spatial"]["C2"]
    positions = pd.DataFrame(c2.obsm["spatial"], index=c2.obs_names, columns=["x", "y"])
    right = (c2.obs["array_col"] + 1).astype(str) + "x" + c2.obs["array_row"].astype(str)
    present = right.isin(c2.obs_names).to_numpy()
    offsets = positions.to_numpy()[present] - positions.loc[right[present]].to_numpy()
    pitch_um = np.median(np.hypot(offsets[:, 0], offsets[:, 1])) * library["metadata"]["microns_per_pixel"]
    assert pitch_um == pytest.approx(200.0, rel=0.02)


def test_her2st_plot_spatial_runs(c2):
    axes = sc.pl.spatial(c2, color="cluster_annotation", library_id="C2", show=False)
    assert len(axes) == 1
    assert len(axes[0].get_images()) == 1


def test_her2st_plot_spatial_scatter_runs(c2):
    sq.pl.spatial_scatter(c2, color="cluster", library_id="C2")
    assert len(plt.gcf().axes[0].get_images()) == 1


@pytest.mark.filterwarnings(SLASH_WARNING)
def test_her2st_write_h5ad_roundtrip(c2, tmp_path):
    c2.write_h5ad(tmp_path / "c2.h5ad")
    loaded = ad.read_h5ad(tmp_path / "c2.h5ad")
    np.testing.assert_array_equal(
        loaded.uns["spatial"]["C2"]["images"]["hires"], c2.uns["spatial"]["C2"]["images"]["hires"]
    )
    assert loaded.uns["spatial"]["C2"]["metadata"] == c2.uns["spatial"]["C2"]["metadata"]
    pd.testing.assert_frame_equal(loaded.obsm["proportions_minor"], c2.obsm["proportions_minor"])
    pd.testing.assert_frame_equal(loaded.uns["cluster_annotations"], c2.uns["cluster_annotations"])


# her2st: sections without an image or labels


def test_her2st_without_image_has_no_images(a1):
    library = a1.uns["spatial"]["A1"]
    assert "images" not in library
    assert "source_image_path" not in library["metadata"]
    assert library["metadata"]["microns_per_pixel"] > 0
    assert library["scalefactors"]["spot_diameter_fullres"] > 0


def test_her2st_without_image_plots_spots(a1):
    axes = sc.pl.spatial(a1, color="pathology", library_id="A1", img_key=None, show=False)
    assert len(axes[0].get_images()) == 0


def test_her2st_without_labels_has_no_pathology(c2):
    assert "pathology" not in c2.obs


# her2st: pathology labels


@pytest.mark.parametrize("section", LABELLED_SECTIONS)
def test_her2st_label_matching_distances(her2st_root, section):
    labels = _labels(her2st_root, section)
    spotfile = _spotfile(her2st_root, section)
    index, distance = _match_to_spots(
        labels[["x", "y"]].to_numpy(), spotfile[["new_x", "new_y"]].to_numpy(), max_distance=0.5
    )
    has_coordinates = labels[["x", "y"]].notna().all(axis=1).to_numpy()
    assert np.nanmax(distance) < 0.01
    assert np.all(index[has_coordinates] >= 0)
    assert len(np.unique(index[has_coordinates])) == int(has_coordinates.sum())


@pytest.mark.parametrize("section", LABELLED_SECTIONS)
def test_her2st_pathology_labelled_spot_count(her2st_root, section):
    adata = her2st(section, root=her2st_root)
    labels = _labels(her2st_root, section).dropna(subset=["x", "y"])
    # Adjusted coordinates lie within 0.3 of the array position, so rounding names the spot.
    spots = labels["x"].round().astype(int).astype(str) + "x" + labels["y"].round().astype(int).astype(str)
    expected = pd.Series(labels["label"].to_numpy(), index=spots.to_numpy())
    expected = expected[expected.index.isin(adata.obs_names)]
    assert adata.obs["pathology"].notna().sum() == len(expected)
    assert adata.obs["pathology"].notna().sum() <= len(_labels(her2st_root, section))
    pd.testing.assert_series_equal(adata.obs.loc[expected.index, "pathology"].astype(str), expected, check_names=False)


def test_her2st_pathology_categories_known(a1):
    assert isinstance(a1.obs["pathology"].dtype, pd.CategoricalDtype)
    assert set(a1.obs["pathology"].cat.categories) <= PATHOLOGY_LABELS


def test_her2st_pathology_a1_counts(a1, her2st_root):
    # A1 has 348 label rows, two of them on spots without counts.
    assert len(_labels(her2st_root, "A1")) == 348
    assert a1.obs["pathology"].notna().sum() == 346
    assert a1.obs["pathology"].value_counts()["invasive cancer"] > 250


def test_match_to_spots_keeps_closest_duplicate():
    reference = np.array([[0.0, 0.0], [1.0, 0.0]])
    query = np.array([[0.1, 0.0], [0.05, 0.0], [5.0, 5.0], [np.nan, np.nan]])
    index, distance = _match_to_spots(query, reference, max_distance=0.5)
    assert index.tolist() == [-1, 0, -1, -1]
    assert distance[1] == pytest.approx(0.05)
    assert np.isnan(distance[3])


# her2st: clusters and proportions


def test_her2st_cluster_annotation_present(c2, her2st_root):
    assert isinstance(c2.obs["cluster"].dtype, pd.CategoricalDtype)
    assert isinstance(c2.obs["cluster_annotation"].dtype, pd.CategoricalDtype)
    clusters = pd.read_csv(
        her2st_root / "res" / "ST-cluster" / "lbl" / "C2-cluster-annotation.tsv.gz", sep="\t", index_col=0
    )
    clusters.index = clusters["x"].astype(str) + "x" + clusters["y"].astype(str)
    assert c2.obs["cluster"].notna().sum() == len(clusters)
    assert c2.obs.loc[clusters.index, "cluster"].astype(int).tolist() == clusters["label"].tolist()


def test_her2st_cluster_annotation_names(c2):
    annotations = c2.uns["cluster_annotations"]
    assert annotations.index.tolist() == [str(number) for number in range(7)]
    assert annotations.loc["0", "name"] == "immune : B/plasma cells, endothelium"
    assert annotations.loc["6", "name"] == "unknown"
    assert annotations.loc["2", "description"].startswith("Marker genes")
    spots = c2.obs.dropna(subset=["cluster"])
    expected = spots["cluster"].astype(str).map(annotations["name"])
    assert spots["cluster_annotation"].astype(str).tolist() == expected.tolist()


def test_her2st_motivation_parsing(her2st_root):
    annotations = _read_motivation(her2st_root / "res" / "ST-cluster" / "motivation.csv")
    assert len(annotations) == 46
    assert set(annotations["patient"]) == set("ABCDEFGH")
    assert annotations["name"].str.len().gt(0).all()
    described = annotations["description"] != ""
    assert annotations.loc[described, "description"].str.startswith("Marker genes").all()
    references = annotations["references"].str.split("; ").explode()
    references = references[references != ""]
    assert references.str.match(r"^(https?://|doi:)").all()


@pytest.mark.parametrize("tier", sorted(PROPORTION_COLUMNS))
def test_her2st_proportions_sum_to_one(c2, tier):
    proportions = c2.obsm[f"proportions_{tier}"]
    assert isinstance(proportions, pd.DataFrame)
    assert proportions.index.equals(c2.obs_names)
    assert proportions.shape[1] == PROPORTION_COLUMNS[tier]
    assert not proportions.isna().any().any()
    np.testing.assert_allclose(proportions.sum(axis=1), 1.0, atol=1e-5)


# her2st: errors and the section table


def test_her2st_missing_root_raises(tmp_path):
    missing = tmp_path / "no_her2st"
    with pytest.raises(FileNotFoundError, match=r"git clone https://github\.com/almaan/her2st") as error:
        her2st("C2", root=missing)
    assert str(missing) in str(error.value)


def test_her2st_no_root_raises(monkeypatch):
    monkeypatch.delenv("OMNIST_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="OMNIST_DATA_DIR"):
        her2st("C2")


def test_her2st_default_root_from_env(monkeypatch, data_dir):
    monkeypatch.setenv("OMNIST_DATA_DIR", str(data_dir))
    assert her2st_sections().loc["C2", "image"]


def test_her2st_missing_spotfile_raises(tmp_path, her2st_root):
    # A tree with the counts folder but no spotfiles, built from symbolic links to the real files.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ST-cnts").symlink_to(her2st_root / "data" / "ST-cnts")
    with pytest.raises(FileNotFoundError, match="ST-spotfiles.*almaan/her2st"):
        her2st("A1", root=tmp_path)


def test_her2st_unknown_section_raises(her2st_root):
    with pytest.raises(ValueError, match=r"unknown her2st section 'Z9'.*available sections: A1, A2"):
        her2st("Z9", root=her2st_root)


def test_her2st_section_without_counts_raises(her2st_root):
    with pytest.raises(ValueError, match="'J1' has no counts file"):
        her2st("J1", root=her2st_root)


def test_her2st_sections_table(her2st_root):
    sections = her2st_sections(her2st_root)
    assert sections.index.name == "section"
    assert len(sections) == 37
    for column in ("counts", "image", "labels"):
        assert sections[column].dtype == bool
    assert sections.loc["C2", "image"]
    assert sections.loc["A1", "labels"]
    assert not sections.loc["A1", "image"]
    assert not sections.loc["J1", "counts"]
    assert sections.loc["J1", "labels"]
    assert sections.index[sections["image"]].tolist() == IMAGE_SECTIONS
    assert sections.index[sections["labels"]].tolist() == LABELLED_SECTIONS + ["J1"]


# Visium


def test_visium_reads_tiny(data_dir):
    adata = visium(data_dir / "visium_tiny")
    assert adata.shape == (100, 100)
    assert adata.var_names.is_unique
    assert adata.obsm["spatial"].shape == (100, 2)
    (library_id,) = adata.uns["spatial"]
    library = adata.uns["spatial"][library_id]
    assert library["images"]["hires"].shape[:2] == (2000, 2000)
    metadata = library["metadata"]
    assert metadata["spot_diameter_um"] == 55.0
    assert metadata["microns_per_pixel"] == pytest.approx(55.0 / library["scalefactors"]["spot_diameter_fullres"])
    assert "source_image_path" not in metadata


def test_visium_library_id_and_source_image(data_dir):
    image = data_dir / "visium_tiny" / "spatial" / "tissue_hires_image.png"
    adata = visium(data_dir / "visium_tiny", library_id="tiny", source_image_path=image)
    assert list(adata.uns["spatial"]) == ["tiny"]
    assert adata.uns["spatial"]["tiny"]["metadata"]["source_image_path"] == str(image.absolute())


def test_visium_missing_source_image_raises(data_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="full-resolution image not found"):
        visium(data_dir / "visium_tiny", source_image_path=tmp_path / "missing.tif")


def test_visium_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="Space Ranger output not found"):
        visium(tmp_path / "outs")


def test_visium_plot_spatial_runs(data_dir):
    adata = visium(data_dir / "visium_tiny")
    axes = sc.pl.spatial(adata, color="array_row", show=False)
    assert len(axes[0].get_images()) == 1


# SpatialData

MICRONS_PER_PIXEL = 0.5


@pytest.fixture(scope="module")
def crop(data_dir: Path) -> tuple[ad.AnnData, np.ndarray]:
    folder = data_dir / "squidpy_visium_crop"
    adata = ad.read_h5ad(folder / "test_data.h5ad")
    image = np.asarray(Image.open(folder / "test_img.jpg").convert("RGB"))
    return adata, image


def _crop_sdata(adata: ad.AnnData, image, *, scale_factors=None):
    """Build a SpatialData with the image and the spots in µm, linked through a "global" system in µm."""
    import spatialdata as sd
    from spatialdata.models import Image2DModel, ShapesModel, TableModel
    from spatialdata.transformations import Identity, Scale

    image_element = Image2DModel.parse(
        image.transpose(2, 0, 1),
        dims=("c", "y", "x"),
        scale_factors=scale_factors,
        transformations={"global": Scale([MICRONS_PER_PIXEL, MICRONS_PER_PIXEL], axes=("x", "y"))},
    )
    spot_diameter_px = adata.uns["spatial"]["V1_Adult_Mouse_Brain"]["scalefactors"]["spot_diameter_fullres"]
    shapes = ShapesModel.parse(
        adata.obsm["spatial"].astype(float) * MICRONS_PER_PIXEL,
        geometry=0,
        radius=np.full(adata.n_obs, spot_diameter_px / 2 * MICRONS_PER_PIXEL),
        index=np.arange(adata.n_obs) + 100,
        transformations={"global": Identity()},
    )
    # The table keeps no positions, so obsm["spatial"] can only come from the shapes.
    table = adata.copy()
    del table.uns["spatial"]
    del table.obsm["spatial"]
    table.obs["region"] = pd.Categorical(["spots"] * table.n_obs)
    # Reversed instance ids check that rows are matched by id, not by order.
    table.obs["spot_id"] = np.arange(adata.n_obs)[::-1] + 100
    table = TableModel.parse(table, region="spots", region_key="region", instance_key="spot_id")
    sdata = sd.SpatialData(images={"he": image_element}, shapes={"spots": shapes}, tables={"table": table})
    expected = adata.obsm["spatial"][::-1].astype(float)
    return sdata, expected


@pytest.fixture(scope="module")
def crop_sdata(crop):
    adata, image = crop
    return _crop_sdata(adata, image, scale_factors=[2])


def test_from_spatialdata_spatial_in_pixels(crop_sdata):
    sdata, expected = crop_sdata
    adata = from_spatialdata(sdata, "table", "he")
    np.testing.assert_allclose(adata.obsm["spatial"], expected, atol=1e-6)
    assert adata.obsm["spatial"].dtype == np.float64


def test_from_spatialdata_image_slots(crop_sdata, crop):
    sdata, _ = crop_sdata
    _, image = crop
    adata = from_spatialdata(sdata, "table", "he", spot_diameter_um=55.0)
    library = adata.uns["spatial"]["he"]
    assert library["images"]["hires"].dtype == np.uint8
    np.testing.assert_array_equal(library["images"]["hires"], image)
    assert isinstance(library["images"]["fullres"], da.Array)
    assert library["images"]["fullres"].shape == image.shape
    assert library["scalefactors"]["tissue_hires_scalef"] == 1.0
    assert library["scalefactors"]["spot_diameter_fullres"] == pytest.approx(89.44476, rel=1e-5)
    assert library["metadata"]["microns_per_pixel"] == pytest.approx(55.0 / 89.44476, rel=1e-5)
    assert library["metadata"]["source_image_key"] == "he"
    assert library["metadata"]["source_image_scale"] == "scale0"
    assert library["metadata"]["coordinate_system"] == "global"


def test_from_spatialdata_fullres_patch_matches_image(crop_sdata, crop):
    sdata, _ = crop_sdata
    _, image = crop
    adata = from_spatialdata(sdata, "table", "he")
    x, y = np.round(adata.obsm["spatial"][0]).astype(int)
    patch = adata.uns["spatial"]["he"]["images"]["fullres"][y - 20 : y + 20, x - 20 : x + 20].compute()
    np.testing.assert_array_equal(patch, image[y - 20 : y + 20, x - 20 : x + 20])


def test_from_spatialdata_scale_level(crop_sdata):
    sdata, expected = crop_sdata
    adata = from_spatialdata(sdata, "table", "he", scale="scale1")
    fullres = adata.uns["spatial"]["he"]["images"]["fullres"]
    assert fullres.shape[:2] == (858, 475)
    np.testing.assert_allclose(adata.obsm["spatial"], expected / 2, atol=0.5)
    assert adata.uns["spatial"]["he"]["metadata"]["source_image_scale"] == "scale1"


def test_from_spatialdata_large_image_thumbnail(crop):
    adata, image = crop
    # Five crops side by side give a 4,750 px wide lazy image that is block-averaged, then resized for hires.
    wide = da.concatenate([da.from_array(image, chunks=(512, 512, 3))] * 5, axis=1)
    sdata, expected = _crop_sdata(adata, wide)
    converted = from_spatialdata(sdata, "table", "he")
    library = converted.uns["spatial"]["he"]
    assert library["images"]["hires"].shape == (723, 2000, 3)
    assert library["scalefactors"]["tissue_hires_scalef"] == pytest.approx(2000 / 4750)
    assert library["images"]["fullres"].shape == (1717, 4750, 3)
    np.testing.assert_allclose(converted.obsm["spatial"], expected, atol=1e-6)


def test_from_spatialdata_without_image(crop_sdata):
    sdata, expected = crop_sdata
    adata = from_spatialdata(sdata, "table")
    assert list(adata.uns["spatial"]) == ["table"]
    assert "images" not in adata.uns["spatial"]["table"]
    np.testing.assert_allclose(adata.obsm["spatial"], expected * MICRONS_PER_PIXEL, atol=1e-6)


def test_from_spatialdata_copies_table(crop_sdata):
    sdata, _ = crop_sdata
    adata = from_spatialdata(sdata, "table", "he")
    adata.obs["leiden"] = "changed"
    assert "spatial" not in sdata.tables["table"].obsm
    assert (sdata.tables["table"].obs["leiden"] != "changed").all()


def test_from_spatialdata_write_h5ad(crop_sdata, tmp_path):
    sdata, _ = crop_sdata
    adata = from_spatialdata(sdata, "table", "he")
    adata.write_h5ad(tmp_path / "crop.h5ad")
    loaded = ad.read_h5ad(tmp_path / "crop.h5ad")
    np.testing.assert_array_equal(
        loaded.uns["spatial"]["he"]["images"]["fullres"],
        adata.uns["spatial"]["he"]["images"]["fullres"].compute(),
    )
    np.testing.assert_allclose(loaded.obsm["spatial"], adata.obsm["spatial"])


def test_from_spatialdata_plot_runs(crop_sdata):
    sdata, _ = crop_sdata
    adata = from_spatialdata(sdata, "table", "he")
    sq.pl.spatial_scatter(adata, color="leiden", library_id="he")
    axes = sc.pl.spatial(adata, color="leiden", library_id="he", show=False)
    assert len(axes[0].get_images()) == 1


def test_from_spatialdata_unknown_keys_raise(crop_sdata):
    sdata, _ = crop_sdata
    with pytest.raises(ValueError, match="table 'cells' not found; tables: table"):
        from_spatialdata(sdata, "cells", "he")
    with pytest.raises(ValueError, match="image 'dapi' not found; images: he"):
        from_spatialdata(sdata, "table", "dapi")
    with pytest.raises(ValueError, match="scale 'scale5' is not a level of the image; levels: scale0, scale1"):
        from_spatialdata(sdata, "table", "he", scale="scale5")
    with pytest.raises(ValueError, match="coordinate system 'aligned' is not shared"):
        from_spatialdata(sdata, "table", "he", coordinate_system="aligned")
