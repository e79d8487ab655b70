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


@pytest.fixture(scope="session")
def her2st_dir(data_dir: Path) -> Path:
    """Folder of the her2st clone under ``OMNIST_DATA_DIR``."""
    return data_dir / "her2st"


@pytest.fixture(scope="session")
def load_her2st(her2st_dir: Path):
    """Return a function that reads a her2st section once per session and returns an independent copy each call."""
    from omnist.datasets import her2st

    cache = {}

    def load(section: str):
        if section not in cache:
            cache[section] = her2st(section, root=her2st_dir)
        return cache[section].copy()

    return load


@pytest.fixture(scope="session")
def text_embed():
    """Sentence embedding function of the default MiniLM text encoder (L2-normalised rows)."""
    from omnist.model._omnist import text_encoder
    from omnist.nn.text import DEFAULT_TEXT_ENCODER

    return text_encoder(DEFAULT_TEXT_ENCODER).embed


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run torch on one thread while a module runs: for the small test models, two threads on two shared
    cores were slower than one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def make_small_config():
    """Return a function that builds a model configuration small enough to train in seconds on two CPU cores."""
    from omnist.model import OmniSTConfig

    def make():
        return OmniSTConfig(d_model=32, n_layers=1, n_heads=2, image_width=8)

    return make


# Pixel size given to the squidpy Visium crop, so that its SpatialData shapes are in µm.
CROP_MICRONS_PER_PIXEL = 0.5


@pytest.fixture(scope="session")
def crop_spatialdata(data_dir: Path):
    """Return a function that builds a SpatialData object of the squidpy Visium crop (image, spots, table).

    The image carries a Scale transform of ``CROP_MICRONS_PER_PIXEL`` and the spots are in µm, so readers
    must map them back to image pixels.
    """

    def build():
        import anndata as ad
        import numpy as np
        import pandas as pd
        import spatialdata as sd
        from PIL import Image
        from spatialdata.models import Image2DModel, ShapesModel, TableModel
        from spatialdata.transformations import Identity, Scale

        folder = data_dir / "squidpy_visium_crop"
        adata = ad.read_h5ad(folder / "test_data.h5ad")
        image = np.asarray(Image.open(folder / "test_img.jpg").convert("RGB"))
        scale = Scale([CROP_MICRONS_PER_PIXEL, CROP_MICRONS_PER_PIXEL], axes=("x", "y"))
        image_element = Image2DModel.parse(
            image.transpose(2, 0, 1), dims=("c", "y", "x"), transformations={"global": scale}
        )
        diameter_px = adata.uns["spatial"]["V1_Adult_Mouse_Brain"]["scalefactors"]["spot_diameter_fullres"]
        shapes = ShapesModel.parse(
            adata.obsm["spatial"].astype(float) * CROP_MICRONS_PER_PIXEL,
            geometry=0,
            radius=np.full(adata.n_obs, diameter_px / 2 * CROP_MICRONS_PER_PIXEL),
            index=np.arange(adata.n_obs),
            transformations={"global": Identity()},
        )
        table = adata.copy()
        del table.uns["spatial"]
        del table.obsm["spatial"]
        table.obs["region"] = pd.Categorical(["spots"] * table.n_obs)
        table.obs["spot_id"] = np.arange(adata.n_obs)
        table = TableModel.parse(table, region="spots", region_key="region", instance_key="spot_id")
        return sd.SpatialData(images={"he": image_element}, shapes={"spots": shapes}, tables={"table": table})

    return build
