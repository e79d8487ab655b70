"""explain with a default-size model on a held-out her2st patient: are the pathologist regions named?

The model is the one ``omnist bench explain`` trains for the F1 fold: default size, the benchmark's
training options and label tasks, trained on A1-E1 with "undetermined" spots left unlabelled. Training took
86 s on two CPU cores. ``test_explain.py`` tests the structure of the result with small models. This
module tests what a default-size model names on a patient it has not seen.
"""

from __future__ import annotations

import time

import anndata as ad
import numpy as np
import pytest
import scanpy as sc

import omnist
from omnist.bench._domains import HER2ST, scored_mask, train_label_model

TRAIN_SECTIONS = ("A1", "B1", "C1", "D1", "E1")
HELD_OUT = "F1"
KEY = "held_out_explain"

pytestmark = [
    pytest.mark.filterwarnings("ignore:Forward slashes:FutureWarning"),
]


@pytest.fixture(scope="module")
def f1_scored(load_her2st) -> tuple[ad.AnnData, list[str]]:
    """F1 explained by the benchmark's F1-fold model, and its regions outside the ignored labels."""
    sections = [load_her2st(name) for name in TRAIN_SECTIONS]
    start = time.perf_counter()
    model = train_label_model(
        sections, label_key=HER2ST.label_key, hidden_labels=HER2ST.ignore_labels, epochs=20, seed=0, progress=False
    )
    print(f"trained the default-size model in {time.perf_counter() - start:.0f} s")
    adata = load_her2st(HELD_OUT)
    labels = adata.obs[HER2ST.label_key]
    regions = list(dict.fromkeys(labels[scored_mask(labels, HER2ST.ignore_labels)].astype(str)))
    omnist.tl.explain(adata, groupby=HER2ST.label_key, groups=regions, model=model, key_added=KEY)
    return adata, regions


def test_explain_held_out_names_most_regions(f1_scored):
    adata, regions = f1_scored
    ranks = {}
    for region in regions:
        labels = list(adata.uns[KEY][region]["identity"]["label"])
        ranks[region] = labels.index(region) + 1
    named = [region for region, rank in ranks.items() if rank == 1]
    print(f"{HELD_OUT}: {len(named)} of {len(regions)} regions named; rank of the true label per region {ranks}")
    assert len(named) / len(regions) > 0.5
    assert np.mean(list(ranks.values())) <= 2.0


def test_explain_held_out_markers_significant(f1_scored):
    """Every cited marker gene has adjusted p < 0.05 in a separate rank_genes_groups run on the same spots."""
    adata, regions = f1_scored
    reference = adata.copy()
    del reference.uns[KEY]
    sc.pp.normalize_total(reference, target_sum=1e4)
    sc.pp.log1p(reference)
    sc.tl.rank_genes_groups(reference, HER2ST.label_key, method="wilcoxon", reference="rest", n_genes=reference.n_vars)
    cited = 0
    for region in regions:
        table = sc.get.rank_genes_groups_df(reference, group=region).set_index("names")
        for gene in adata.uns[KEY][region]["markers"]["gene"]:
            assert table.loc[gene, "pvals_adj"] < 0.05, (region, gene)
            cited += 1
    assert cited > 0
