"""Load sections of the HER2-positive breast cancer Spatial Transcriptomics data of Andersson et al. 2021.

The reader expects the layout of the authors' public repository (``git clone https://github.com/almaan/her2st``):

- ``data/ST-cnts/{section}.tsv.gz``: raw UMI counts, one row per spot named ``{x}x{y}`` in array coordinates;
- ``data/ST-spotfiles/{section}_selection.tsv``: array ``x``, ``y``, adjusted ``new_x``, ``new_y`` and
  full-resolution ``pixel_x``, ``pixel_y`` per spot;
- ``data/ST-imgs/{patient}/{section}/*.jpg``: full-resolution H&E images (sections C2–C6 only);
- ``data/ST-pat/lbl/{section}_labeled_coordinates.tsv``: pathologist regions (A1, B1, C1, D1, E1, F1, J1);
- ``res/ST-cluster/lbl/{section}-cluster-annotation.tsv.gz`` and ``res/ST-cluster/motivation.csv``:
  expression clusters and their annotation per patient;
- ``res/ST-deconv/props/{major,minor,subset}.zip``: stereoscope cell-type proportions per spot.

Reference: Andersson et al., "Spatial deconvolution of HER2-positive breast cancer delineates
tumor-associated cell type interactions", Nature Communications 12, 6012 (2021).
"""

from __future__ import annotations

import logging
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scipy.spatial import cKDTree

from omnist.data.image import ImageSource

logger = logging.getLogger(__name__)

SPOT_DIAMETER_UM = 100.0
"""Diameter of a Spatial Transcriptomics spot in µm."""

SPOT_PITCH_UM = 200.0
"""Centre-to-centre distance of array-neighbouring Spatial Transcriptomics spots in µm."""

HIRES_MAX_SIDE = 2000
"""Longer side of the hires image in px, as in Space Ranger's ``tissue_hires_image.png``."""

PROPORTION_TIERS = ("major", "minor", "subset")

# Pathology labels carry adjusted array coordinates that equal the spotfile's ``new_x``/``new_y`` to
# 3 decimals. A label farther than half the spot pitch (in array units) from every spot is not matched.
_MAX_LABEL_DISTANCE = 0.5

_SOURCE_HINT = (
    "The her2st data come from the public repository of Andersson et al. 2021 "
    "(Nature Communications 12, 6012): run `git clone https://github.com/almaan/her2st` "
    "and pass the cloned folder as `root`."
)


def her2st_sections(root: str | Path | None = None) -> pd.DataFrame:
    """List the her2st sections and which data each one has.

    Parameters
    ----------
    root
        Folder of a clone of the her2st repository. Defaults to ``$OMNIST_DATA_DIR/her2st``.

    Returns
    -------
    A DataFrame indexed by section name (sorted) with columns ``patient`` (str) and the bool columns
    ``counts`` (a counts file exists), ``image`` (a full-resolution H&E image exists) and ``labels``
    (pathologist labels exist). Sections with labels but no counts (J1) are included.

    Examples
    --------
    >>> sections = omnist.datasets.her2st_sections()
    >>> sections.index[sections["image"]].tolist()
    ['C2', 'C3', 'C4', 'C5', 'C6']
    """
    root = _resolve_root(root)
    counts_dir = _require(root / "data" / "ST-cnts")
    labels_dir = root / "data" / "ST-pat" / "lbl"

    with_counts = {path.name.removesuffix(".tsv.gz") for path in counts_dir.glob("*.tsv.gz")}
    with_labels = {path.name.removesuffix("_labeled_coordinates.tsv") for path in labels_dir.glob("*.tsv")}
    with_image = {section for section in with_counts | with_labels if _find_image(root, section) is not None}

    sections = sorted(with_counts | with_labels)
    return pd.DataFrame(
        {
            "patient": [section[0] for section in sections],
            "counts": [section in with_counts for section in sections],
            "image": [section in with_image for section in sections],
            "labels": [section in with_labels for section in sections],
        },
        index=pd.Index(sections, name="section"),
    )


def her2st(section: str, root: str | Path | None = None) -> AnnData:
    """Load one section of the her2st data set as an AnnData with image, labels, clusters and proportions.

    Parameters
    ----------
    section
        Section name, a patient letter and a replicate number, such as ``"A1"`` or ``"C2"``.
        :func:`her2st_sections` lists them.
    root
        Folder of a clone of the her2st repository. Defaults to ``$OMNIST_DATA_DIR/her2st``.

    Returns
    -------
    An AnnData with one observation per spot of the counts file (names ``{x}x{y}`` in array coordinates) and
    one variable per gene symbol:

    - ``X``: raw UMI counts, CSR float32;
    - ``var_names``: gene symbols, made unique when a symbol repeats, and then ``var["gene_symbol"]``
      contains the original symbol;
    - ``obs["array_row"]``, ``obs["array_col"]``: array ``y`` and ``x`` (int64);
      ``obs["section"]``, ``obs["patient"]``: categorical;
    - ``obsm["spatial"]``: spot centres ``(x, y)`` in full-resolution image pixels (float64);
    - ``uns["spatial"][section]``: ``scalefactors`` with ``spot_diameter_fullres`` and ``metadata`` with
      ``microns_per_pixel`` and ``spot_diameter_um`` (100.0) for every section. ``microns_per_pixel``
      is 200 µm divided by the median pixel distance between array-neighbouring spots. Sections with an
      image (C2–C6) also get ``images["hires"]`` (uint8, longer side 2,000 px),
      ``scalefactors["tissue_hires_scalef"]`` and ``metadata["source_image_path"]`` (absolute path of the
      full-resolution JPEG). Sections without an image have no ``images`` entry, and
      ``sc.pl.spatial(adata, library_id=section, img_key=None)`` draws their spots without a background;
    - ``obs["pathology"]``: pathologist region (categorical, NaN for unlabelled spots), for sections with a
      label file (A1, B1, C1, D1, E1, F1);
    - ``obs["cluster"]`` (categorical of cluster numbers as strings) and ``obs["cluster_annotation"]``
      (categorical), NaN for spots the cluster file leaves out; ``uns["cluster_annotations"]``: a DataFrame
      indexed by cluster with columns ``name``, ``description`` (marker genes and pathways in prose) and
      ``references`` (URLs joined by ``"; "``) for the section's patient;
    - ``obsm["proportions_major"]``, ``obsm["proportions_minor"]``, ``obsm["proportions_subset"]``:
      stereoscope cell-type proportions (DataFrames indexed by ``obs_names``, one column per cell type,
      float64, NaN rows for spots the file leaves out).

    Raises
    ------
    ValueError
        If neither ``root`` nor ``OMNIST_DATA_DIR`` is given, or ``section`` has no counts file.
    FileNotFoundError
        If a folder or file of the repository layout is missing.

    Examples
    --------
    >>> adata = omnist.datasets.her2st("C2")
    >>> sc.pl.spatial(adata, color="cluster_annotation", library_id="C2")
    """
    start = time.perf_counter()
    root = _resolve_root(root)
    _check_section(root, section)
    patient = section[0]
    logger.info("reading her2st section %s from %s", section, root)

    adata = _read_counts(_require(root / "data" / "ST-cnts" / f"{section}.tsv.gz"))
    adata.obs["section"] = pd.Categorical([section] * adata.n_obs)
    adata.obs["patient"] = pd.Categorical([patient] * adata.n_obs)

    spotfile = _read_spotfile(_require(root / "data" / "ST-spotfiles" / f"{section}_selection.tsv"))
    _add_positions(adata, spotfile)
    _add_spatial_metadata(adata, section, spotfile, _find_image(root, section))

    labels_path = root / "data" / "ST-pat" / "lbl" / f"{section}_labeled_coordinates.tsv"
    if labels_path.is_file():
        _add_pathology(adata, labels_path, spotfile)

    cluster_dir = root / "res" / "ST-cluster"
    _add_clusters(
        adata,
        _require(cluster_dir / "lbl" / f"{section}-cluster-annotation.tsv.gz"),
        _require(cluster_dir / "motivation.csv"),
        patient,
    )

    for tier in PROPORTION_TIERS:
        zip_path = _require(root / "res" / "ST-deconv" / "props" / f"{tier}.zip")
        adata.obsm[f"proportions_{tier}"] = _read_proportions(zip_path, tier, section, adata.obs_names)

    logger.info(
        "read her2st section %s: %d spots x %d genes in %.1f s",
        section,
        adata.n_obs,
        adata.n_vars,
        time.perf_counter() - start,
    )
    return adata


def _resolve_root(root: str | Path | None) -> Path:
    if root is None:
        data_dir = os.environ.get("OMNIST_DATA_DIR")
        if not data_dir:
            raise ValueError(
                "no her2st folder given: pass `root` (a clone of https://github.com/almaan/her2st) "
                "or set the OMNIST_DATA_DIR environment variable to a folder that contains `her2st/`"
            )
        root = Path(data_dir) / "her2st"
    return _require(Path(root).expanduser().absolute())


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"her2st path not found: {path}. {_SOURCE_HINT}")
    return path


def _check_section(root: Path, section: str) -> None:
    sections = her2st_sections(root)
    with_counts = sections.index[sections["counts"]].tolist()
    if section in with_counts:
        return
    if section in sections.index:
        raise ValueError(
            f"her2st section {section!r} has no counts file in {root / 'data' / 'ST-cnts'}; "
            f"sections with counts: {', '.join(with_counts)}"
        )
    raise ValueError(f"unknown her2st section {section!r}; available sections: {', '.join(with_counts)}")


def _find_image(root: Path, section: str) -> Path | None:
    images = sorted((root / "data" / "ST-imgs" / section[0] / section).glob("*.jpg"))
    if len(images) > 1:
        logger.warning("found %d images for her2st section %s, using %s", len(images), section, images[0])
    return images[0] if images else None


def _read_counts(path: Path) -> AnnData:
    counts = pd.read_csv(path, sep="\t", index_col=0)
    counts.index = counts.index.astype(str)
    adata = AnnData(
        X=sparse.csr_matrix(counts.to_numpy(dtype=np.float32)),
        obs=pd.DataFrame(index=pd.Index(counts.index, name=None)),
        var=pd.DataFrame(index=pd.Index(counts.columns.astype(str), name=None)),
    )
    if adata.var_names.has_duplicates:
        adata.var["gene_symbol"] = adata.var_names.to_numpy()
        adata.var_names_make_unique()
    return adata


def _read_spotfile(path: Path) -> pd.DataFrame:
    spotfile = pd.read_csv(path, sep="\t")
    spotfile["spot"] = spotfile["x"].astype(int).astype(str) + "x" + spotfile["y"].astype(int).astype(str)
    if spotfile["spot"].duplicated().any():
        raise ValueError(f"spotfile {path} lists array positions more than once")
    return spotfile.set_index("spot")


def _add_positions(adata: AnnData, spotfile: pd.DataFrame) -> None:
    missing = adata.obs_names.difference(spotfile.index)
    if len(missing) > 0:
        # The published sections have a spotfile row for every spot with counts. A spot without one has no
        # pixel position, and a NaN position would break plotting and patch extraction.
        raise ValueError(
            f"{len(missing)} spots of the counts file have no row in the spotfile, for example {', '.join(missing[:5])}"
        )
    positions = spotfile.loc[adata.obs_names]
    adata.obs["array_row"] = positions["y"].to_numpy(dtype=np.int64)
    adata.obs["array_col"] = positions["x"].to_numpy(dtype=np.int64)
    adata.obsm["spatial"] = positions[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)


def _microns_per_pixel(spotfile: pd.DataFrame) -> float:
    """Return µm per full-resolution pixel from the pixel distance of array-neighbouring spots."""
    pixels = spotfile.set_index(["x", "y"])[["pixel_x", "pixel_y"]]
    distances = []
    for dx, dy in ((1, 0), (0, 1)):
        neighbours = pd.MultiIndex.from_arrays(
            [pixels.index.get_level_values(0) + dx, pixels.index.get_level_values(1) + dy]
        )
        present = neighbours.isin(pixels.index)
        offsets = pixels.to_numpy()[present] - pixels.loc[neighbours[present]].to_numpy()
        distances.append(np.hypot(offsets[:, 0], offsets[:, 1]))
    distances = np.concatenate(distances)
    if len(distances) == 0:
        raise ValueError("the spotfile has no array-neighbouring spots to measure the pixel size from")
    return SPOT_PITCH_UM / float(np.median(distances))


def _add_spatial_metadata(adata: AnnData, section: str, spotfile: pd.DataFrame, image_path: Path | None) -> None:
    microns_per_pixel = _microns_per_pixel(spotfile)
    library = {
        "scalefactors": {"spot_diameter_fullres": SPOT_DIAMETER_UM / microns_per_pixel},
        "metadata": {"microns_per_pixel": microns_per_pixel, "spot_diameter_um": SPOT_DIAMETER_UM},
    }

    if image_path is not None:
        source = ImageSource(path=image_path)
        height, width = source.shape
        hires, scale = source.thumbnail(HIRES_MAX_SIDE)
        library["images"] = {"hires": hires}
        library["scalefactors"]["tissue_hires_scalef"] = float(scale)
        library["metadata"]["source_image_path"] = str(image_path.absolute())
        logger.debug(
            "her2st section %s: image %d x %d px, hires %d x %d px (scale %.4f), %.3f µm per px",
            section,
            width,
            height,
            hires.shape[1],
            hires.shape[0],
            scale,
            microns_per_pixel,
        )

    adata.uns["spatial"] = {section: library}


def _match_to_spots(query: np.ndarray, reference: np.ndarray, max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Match each query point to its nearest reference point.

    Returns the reference row per query row (-1 where none lies within ``max_distance`` or a closer query
    row took the reference row) and the distance to the nearest reference point (NaN for NaN queries).
    """
    query = np.asarray(query, dtype=np.float64)
    index = np.full(len(query), -1, dtype=np.int64)
    distance = np.full(len(query), np.nan)
    valid = ~np.isnan(query).any(axis=1)
    if valid.any():
        distance[valid], index[valid] = cKDTree(reference).query(query[valid])
    index[distance > max_distance] = -1

    # A reference point claimed by several queries keeps the closest one.
    order = np.argsort(np.where(np.isnan(distance), np.inf, distance), kind="stable")
    claimed = set()
    for row in order:
        if index[row] < 0:
            continue
        if index[row] in claimed:
            index[row] = -1
        else:
            claimed.add(index[row])
    return index, distance


def _add_pathology(adata: AnnData, labels_path: Path, spotfile: pd.DataFrame) -> None:
    labels = pd.read_csv(labels_path, sep="\t")
    # The label files' ``pixel_x``/``pixel_y`` refer to the annotated image, not to the full-resolution
    # image of the spotfile, so labels are matched on the adjusted array coordinates instead.
    index, distance = _match_to_spots(
        labels[["x", "y"]].to_numpy(), spotfile[["new_x", "new_y"]].to_numpy(), _MAX_LABEL_DISTANCE
    )

    no_coordinates = int(np.isnan(distance).sum())
    if no_coordinates:
        logger.warning("%d pathology labels in %s have no coordinates and are skipped", no_coordinates, labels_path)
    too_far = int((distance > _MAX_LABEL_DISTANCE).sum())
    if too_far:
        logger.warning(
            "%d pathology labels in %s lie farther than %.1f array units from every spot and are skipped",
            too_far,
            labels_path,
            _MAX_LABEL_DISTANCE,
        )
    duplicates = int(((index < 0) & (distance <= _MAX_LABEL_DISTANCE)).sum())
    if duplicates:
        logger.warning(
            "%d pathology labels in %s match a spot that a closer label already took and are skipped",
            duplicates,
            labels_path,
        )

    matched = index >= 0
    per_spot = pd.Series(labels["label"].to_numpy()[matched], index=spotfile.index[index[matched]])
    without_counts = int((~per_spot.index.isin(adata.obs_names)).sum())
    if without_counts:
        logger.info("%d pathology labels in %s belong to spots without counts", without_counts, labels_path)

    adata.obs["pathology"] = pd.Categorical(per_spot.reindex(adata.obs_names).to_numpy())
    logger.debug(
        "matched %d of %d pathology labels (max distance %.3g array units)",
        int(matched.sum()),
        len(labels),
        float(np.nanmax(distance[matched])) if matched.any() else np.nan,
    )


def _read_motivation(path: Path) -> pd.DataFrame:
    """Read the cluster annotations of ``motivation.csv``.

    The file is not valid CSV because names and descriptions contain unquoted commas. Each line is
    ``patient,cluster,name,description,ref1,ref2``, where the description starts with "Marker genes" (or is
    empty) and the two references are URLs without commas (or empty).
    """
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        if not line.strip():
            continue
        patient, cluster, rest = line.split(",", 2)
        text, ref1, ref2 = rest.rsplit(",", 2)
        marker_start = text.find(",Marker genes")
        if marker_start >= 0:
            name, description = text[:marker_start], text[marker_start + 1 :]
        else:
            name, _, description = text.rpartition(",")
        references = "; ".join(ref.strip() for ref in (ref1, ref2) if ref.strip())
        records.append(
            {
                "patient": patient.strip(),
                "cluster": cluster.strip(),
                "name": name.strip(),
                "description": description.strip(),
                "references": references,
            }
        )
    return pd.DataFrame.from_records(records)


def _add_clusters(adata: AnnData, cluster_path: Path, motivation_path: Path, patient: str) -> None:
    clusters = pd.read_csv(cluster_path, sep="\t", index_col=0)
    # The file's index contains pixel coordinates, so the spot name comes from the integer array ``x``, ``y``.
    clusters.index = clusters["x"].astype(int).astype(str) + "x" + clusters["y"].astype(int).astype(str)
    cluster = clusters["label"].astype(int).astype(str).reindex(adata.obs_names)

    missing = int(cluster.isna().sum())
    if missing:
        logger.info("%d spots have no cluster in %s", missing, cluster_path)

    annotations = _read_motivation(motivation_path)
    annotations = annotations[annotations["patient"] == patient].drop(columns="patient").set_index("cluster")
    unannotated = sorted(set(cluster.dropna()) - set(annotations.index), key=int)
    if unannotated:
        logger.warning("clusters %s of patient %s have no annotation in %s", unannotated, patient, motivation_path)

    categories = sorted(set(cluster.dropna()) | set(annotations.index), key=int)
    adata.obs["cluster"] = pd.Categorical(cluster.to_numpy(), categories=categories)
    adata.obs["cluster_annotation"] = pd.Categorical(cluster.map(annotations["name"]).to_numpy())
    annotations.index.name = "cluster"
    adata.uns["cluster_annotations"] = annotations.loc[sorted(annotations.index, key=int)]


def _read_proportions(zip_path: Path, tier: str, section: str, obs_names: pd.Index) -> pd.DataFrame:
    member = f"{tier}/{section}-proportion.tsv"
    with zipfile.ZipFile(zip_path) as archive:
        if member not in archive.namelist():
            raise FileNotFoundError(f"her2st file not found: {member} in {zip_path}. {_SOURCE_HINT}")
        with archive.open(member) as handle:
            proportions = pd.read_csv(handle, sep="\t", index_col=0)
    proportions.index = proportions.index.astype(str)

    missing = int((~obs_names.isin(proportions.index)).sum())
    if missing:
        logger.warning("%d spots have no %s cell-type proportions in %s; their rows are NaN", missing, tier, zip_path)
    # NOTE: anndata 0.12 warns that a later release will reject '/' in h5ad keys, as in the cell type
    # "CAFs MSC/iCAF-like". The column names are kept as the atlas spells them.
    return proportions.reindex(obs_names).astype(np.float64)
