"""Expression → domain transfer and unsupervised spatial domains on DLPFC and her2st.

Both tasks compare omnist with standard scanpy/scikit-learn pipelines in the same folds. Shared pieces live
here too: section loaders, the cache of trained models that lets tasks with the same training split train
once, and the label-scoring helpers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import squidpy as sq
from anndata import AnnData
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, adjusted_rand_score, f1_score

from omnist.bench._report import summarise
from omnist.data.expression import log1p_cp10k
from omnist.datasets import her2st, her2st_sections
from omnist.model import OmniST, OmniSTConfig
from omnist.pp import build_instructions
from omnist.tl import embed, train, translate

logger = logging.getLogger(__name__)

DLPFC_SECTIONS = ("151673", "151674", "151675")
DLPFC_TEST_SECTION = "151675"
# her2st sections with pathologist labels and counts (J1 has labels but no counts).
HER2ST_LABELLED_SECTIONS = ("A1", "B1", "C1", "D1", "E1", "F1")
# B1 is the only labelled section with breast glands and has the most adipose tissue (70 spots).
HER2ST_TEST_SECTION = "B1"
# Spots the her2st pathologists marked "undetermined" carry no region, so they are neither trained on nor scored.
HER2ST_IGNORED_LABELS = ("undetermined",)


# Tasks of the models that the label benchmarks train: the label classifier with its retrieval and
# description instructions, and the masked-gene embedding.
LABEL_TASKS = ("expression_to_domain", "region_to_text", "text_to_region", "embed")


@dataclass(frozen=True)
class LabelledDataset:
    """Settings of a data set with spot labels for the label tasks of the benchmark."""

    name: str
    label_key: str
    sections: tuple[str, ...]
    test_section: str
    ignore_labels: tuple[str, ...]
    instruction: str
    zero_shot_label: str
    zero_shot_query: str


DLPFC = LabelledDataset(
    name="dlpfc",
    label_key="layer",
    sections=DLPFC_SECTIONS,
    test_section=DLPFC_TEST_SECTION,
    ignore_labels=(),
    instruction="assign each spot to its cortical layer",
    zero_shot_label="WM",
    zero_shot_query="find white matter",
)
HER2ST = LabelledDataset(
    name="her2st",
    label_key="pathology",
    sections=HER2ST_LABELLED_SECTIONS,
    test_section=HER2ST_TEST_SECTION,
    ignore_labels=HER2ST_IGNORED_LABELS,
    instruction="assign each spot to its pathology region",
    zero_shot_label="adipose tissue",
    zero_shot_query="find adipose tissue",
)

DOMAIN_METHODS = ("omnist", "logreg_pca")
CLUSTER_METHODS = ("omnist", "kmeans_pca", "kmeans_pca_smoothed")
N_TOP_GENES = 2000


# Loading


def load_dlpfc(
    data_dir: str | Path, sections: Sequence[str] = DLPFC_SECTIONS, max_spots: int | None = None
) -> dict[str, AnnData]:
    """Read DLPFC sections from ``data_dir/{section}.h5ad``, optionally keeping only the first ``max_spots`` spots."""
    adatas = {}
    for name in sections:
        path = Path(data_dir) / f"{name}.h5ad"
        if not path.is_file():
            raise FileNotFoundError(f"DLPFC section file {path} not found: pass the folder that contains {name}.h5ad.")
        adatas[name] = _first_spots(ad.read_h5ad(path), max_spots)
    return adatas


def load_pathology_sections(
    data_dir: str | Path, sections: Sequence[str] | None = None, max_spots: int | None = None
) -> dict[str, AnnData]:
    """Read her2st sections with pathologist labels in ``obs["pathology"]`` (by default all six: A1–F1)."""
    table = her2st_sections(data_dir)
    labelled = [name for name in table.index if table.loc[name, "labels"] and table.loc[name, "counts"]]
    sections = labelled if sections is None else list(sections)
    unknown = [name for name in sections if name not in labelled]
    if unknown:
        raise ValueError(f"Sections {unknown} have no pathologist labels or counts; labelled sections: {labelled}.")
    return {name: _first_spots(her2st(name, root=data_dir), max_spots) for name in sections}


def _first_spots(adata: AnnData, max_spots: int | None) -> AnnData:
    if max_spots is None or adata.n_obs <= max_spots:
        return adata
    return adata[:max_spots].copy()


# Trained models


class ModelCache:
    """Models trained on label tasks, keyed by training split, hidden labels and training options.

    Tasks that pass the same cache and the same training sections reuse one model: the DLPFC model trained on
    151673 and 151674 serves expression → domain and the 151675 embedding of the domain task. Keys include
    each training section's name and spot count, so a cache must only be shared between calls on the same
    loaded sections.
    """

    def __init__(self) -> None:
        self._models: dict[tuple, OmniST] = {}

    def __len__(self) -> int:
        return len(self._models)

    def get(
        self,
        adatas: Mapping[str, AnnData],
        training: Sequence[str],
        *,
        label_key: str,
        hidden_labels: Sequence[str] = (),
        epochs: int,
        seed: int,
        n_genes: int,
        config: OmniSTConfig | None,
        progress: bool,
    ) -> OmniST:
        """Return the model for this training split, training it on first use (see :func:`train_label_model`)."""
        key = (
            tuple((name, adatas[name].n_obs) for name in training),
            label_key,
            tuple(sorted(hidden_labels)),
            epochs,
            seed,
            n_genes,
            _config_key(config),
        )
        if key not in self._models:
            self._models[key] = train_label_model(
                [adatas[name] for name in training],
                label_key=label_key,
                hidden_labels=hidden_labels,
                epochs=epochs,
                seed=seed,
                n_genes=n_genes,
                config=config,
                progress=progress,
            )
        return self._models[key]


def _config_key(config: OmniSTConfig | None) -> str | None:
    """Return the sizes of ``config`` as a string, without its random ``model_id``."""
    if config is None:
        return None
    sizes = {key: value for key, value in config.to_dict().items() if key != "model_id"}
    return json.dumps(sizes, sort_keys=True)


def train_label_model(
    sections: Sequence[AnnData],
    *,
    label_key: str,
    hidden_labels: Sequence[str] = (),
    epochs: int = 20,
    seed: int = 0,
    n_genes: int = 1000,
    config: OmniSTConfig | None = None,
    progress: bool = True,
) -> OmniST:
    """Train omnist on copies of ``sections`` with instructions from ``build_instructions(label_keys=[label_key])``.

    The model learns the tasks in ``LABEL_TASKS``, the ones the label benchmarks score, so that tasks added
    to :func:`omnist.pp.build_instructions` later do not change these benchmarks.

    Spots whose label is in ``hidden_labels`` become unlabelled (NaN) before the instructions are built, so
    the model is never trained on those label names. The input sections are not modified.
    """
    copies = [hide_labels(adata, label_key, hidden_labels) for adata in sections]
    for adata in copies:
        build_instructions(adata, label_keys=[label_key], seed=seed)
    return train(copies, tasks=LABEL_TASKS, n_genes=n_genes, epochs=epochs, seed=seed, config=config, progress=progress)


def hide_labels(adata: AnnData, label_key: str, hidden_labels: Sequence[str]) -> AnnData:
    """Return a copy of ``adata`` in which ``obs[label_key]`` is NaN wherever it is one of ``hidden_labels``."""
    if label_key not in adata.obs:
        raise KeyError(f"Label key {label_key!r} is not a column of adata.obs; columns: {list(adata.obs.columns)}.")
    copy = adata.copy()
    labels = copy.obs[label_key].astype(object)
    labels[labels.isin(list(hidden_labels))] = np.nan
    copy.obs[label_key] = pd.Categorical(labels)
    return copy


# Scoring


def scored_mask(labels: pd.Series | np.ndarray, ignore_labels: Sequence[str] = ()) -> np.ndarray:
    """Return which spots are scored: labelled (not NaN) and not one of ``ignore_labels``."""
    values = pd.Series(np.asarray(labels, dtype=object))
    return (values.notna() & ~values.isin(list(ignore_labels))).to_numpy()


def label_values(adatas: Mapping[str, AnnData], label_key: str, ignore_labels: Sequence[str] = ()) -> list[str]:
    """Return the sorted label names of ``obs[label_key]`` over all sections, without NaN and ``ignore_labels``."""
    values = set()
    for adata in adatas.values():
        labels = adata.obs[label_key]
        values |= {str(value) for value in labels[scored_mask(labels, ignore_labels)].unique()}
    return sorted(values)


def classification_scores(true: Sequence, predicted: Sequence) -> dict[str, float]:
    """Return macro-F1, accuracy and ARI of predicted labels.

    Macro-F1 averages the F1 of the classes present in ``true``. A prediction of any other class counts as a
    miss of the true class and adds no class of its own to the average.
    """
    true = np.asarray(true, dtype=object).astype(str)
    predicted = np.asarray(predicted, dtype=object).astype(str)
    if true.shape != predicted.shape:
        raise ValueError(f"Shapes differ: true {true.shape}, predicted {predicted.shape}.")
    if true.size == 0:
        raise ValueError("No labelled spots to score.")
    classes = sorted(set(true))
    return {
        "macro_f1": float(f1_score(true, predicted, labels=classes, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(true, predicted)),
        "ari": float(adjusted_rand_score(true, predicted)),
    }


# Baselines


def hvg_expression(
    training: Sequence[AnnData], test: AnnData, n_top_genes: int = N_TOP_GENES
) -> tuple[np.ndarray, np.ndarray]:
    """Return log1p(CP10k) of the highly variable genes of the training sections, for training and test spots.

    Genes are those shared by every section. The highly variable genes come from ``scanpy.pp.highly_variable_genes``
    (Seurat flavour) on the training spots only.
    """
    shared = set(test.var_names)
    for adata in training:
        shared &= set(adata.var_names)
    genes = [gene for gene in test.var_names if gene in shared]
    if not genes:
        raise ValueError("The training and test sections share no gene: check that var_names use the same IDs.")
    train_values = np.concatenate([log1p_cp10k(adata, genes) for adata in training])
    variable = _highly_variable(train_values, genes, n_top_genes)
    position = {gene: index for index, gene in enumerate(genes)}
    positions = [position[gene] for gene in variable]
    return train_values[:, positions], log1p_cp10k(test, variable)


def logreg_pca(
    train_values: np.ndarray,
    train_labels: Sequence,
    test_values: np.ndarray,
    *,
    n_components: int = 50,
    seed: int = 0,
) -> np.ndarray:
    """Predict test labels with PCA (fit on the training spots) followed by logistic regression."""
    train_labels = np.asarray(train_labels, dtype=object).astype(str)
    n_components = min(n_components, train_values.shape[1], train_values.shape[0] - 1)
    pca = PCA(n_components=n_components, random_state=seed).fit(train_values)
    classifier = LogisticRegression(max_iter=1000, random_state=seed)
    classifier.fit(pca.transform(train_values), train_labels)
    return classifier.predict(pca.transform(test_values))


def pca_embedding(
    adata: AnnData, *, n_top_genes: int = N_TOP_GENES, n_components: int = 30, seed: int = 0
) -> np.ndarray:
    """Return PCA coordinates of a section's log1p(CP10k) highly variable genes."""
    values = log1p_cp10k(adata)
    variable = _highly_variable(values, list(adata.var_names), n_top_genes)
    values = values[:, adata.var_names.get_indexer(variable)]
    n_components = min(n_components, values.shape[1], values.shape[0] - 1)
    return PCA(n_components=n_components, random_state=seed).fit_transform(values)


def smooth_spatially(adata: AnnData, values: np.ndarray, n_neighs: int = 6) -> np.ndarray:
    """Average each spot's ``values`` with those of its ``n_neighs`` nearest spots in ``obsm["spatial"]``.

    The k-nearest-neighbour graph comes from squidpy on a copy of the coordinates: ``spatial_neighbors_knn``
    where the installed squidpy has it (1.8.2 does), else ``spatial_neighbors(coord_type="generic")``.
    """
    view = AnnData(obs=pd.DataFrame(index=adata.obs_names), obsm={"spatial": np.asarray(adata.obsm["spatial"])})
    n_neighs = min(n_neighs, adata.n_obs - 1)
    if hasattr(sq.gr, "spatial_neighbors_knn"):
        sq.gr.spatial_neighbors_knn(view, n_neighs=n_neighs)
    else:
        sq.gr.spatial_neighbors(view, coord_type="generic", n_neighs=n_neighs)
    graph = sparse.csr_matrix(view.obsp["spatial_connectivities"])
    graph = (graph > 0).astype(np.float64) + sparse.identity(adata.n_obs, format="csr")
    counts = np.asarray(graph.sum(axis=1)).ravel()
    return np.asarray(graph @ values) / counts[:, None]


def cluster_kmeans(values: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Return k-means cluster labels (``n_init=10``)."""
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(values)


def _highly_variable(values: np.ndarray, genes: list[str], n_top_genes: int) -> list[str]:
    frame = AnnData(X=values, var=pd.DataFrame(index=pd.Index(genes)))
    table = sc.pp.highly_variable_genes(frame, n_top_genes=min(n_top_genes, len(genes)), inplace=False)
    return [gene for gene, flag in zip(genes, table["highly_variable"], strict=True) if flag]


# Tasks


def expression_to_domain(
    adatas: Mapping[str, AnnData],
    *,
    label_key: str,
    test_sections: Sequence[str],
    ignore_labels: Sequence[str] = (),
    instruction: str | None = None,
    epochs: int = 20,
    seed: int = 0,
    n_genes: int = 1000,
    n_top_genes: int = N_TOP_GENES,
    config: OmniSTConfig | None = None,
    models: ModelCache | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Transfer labels from the other sections to each test section with omnist and ``logreg_pca``.

    For each section in ``test_sections`` both methods train on every other section of ``adatas``:

    - ``omnist``: a model trained with ``build_instructions(label_keys=[label_key])``, then
      ``translate(test, instruction)``, which picks among the training label names;
    - ``logreg_pca``: log1p(CP10k) of genes shared by all sections, ``n_top_genes`` highly variable genes and a
      50-component PCA fit on the training spots, and ``LogisticRegression(max_iter=1000)``.

    Spots with a NaN label or one of ``ignore_labels`` are left out of training and scoring. Metrics on the
    remaining test spots: macro-F1 (over the classes present in the test section), accuracy and ARI.

    Returns
    -------
    ``{method: {"macro_f1", "accuracy", "ari": float, "per_section": {section: {metric: float}}}}``; each
    metric averages the test sections.
    """
    check_sections(adatas, test_sections, label_key)
    models = ModelCache() if models is None else models
    instruction = instruction or f"assign each spot to its {label_key.replace('_', ' ')}"
    per_section: dict[str, dict] = {method: {} for method in DOMAIN_METHODS}

    for held_out in test_sections:
        start = time.perf_counter()
        training = [name for name in adatas if name != held_out]
        test = adatas[held_out]
        scored = scored_mask(test.obs[label_key], ignore_labels)
        true = test.obs[label_key].to_numpy()[scored]

        train_sections = [hide_labels(adatas[name], label_key, ignore_labels) for name in training]
        train_values, test_values = hvg_expression(train_sections, test, n_top_genes)
        train_labels = np.concatenate([adata.obs[label_key].to_numpy(dtype=object) for adata in train_sections])
        keep = scored_mask(train_labels)
        predicted = logreg_pca(train_values[keep], train_labels[keep], test_values, seed=seed)
        per_section["logreg_pca"][held_out] = classification_scores(true, predicted[scored])

        model = models.get(
            adatas,
            training,
            label_key=label_key,
            hidden_labels=ignore_labels,
            epochs=epochs,
            seed=seed,
            n_genes=n_genes,
            config=config,
            progress=progress,
        )
        result = translate(test, instruction, model=model, key_added="bench", copy=True, progress=False)
        task = result.uns["bench"]["params"]["task"]
        if task != "expression_to_domain":
            raise ValueError(f"Instruction {instruction!r} resolved to task {task!r}, not expression_to_domain.")
        predicted = result.obs["bench"].to_numpy(dtype=object)
        per_section["omnist"][held_out] = classification_scores(true, predicted[scored])
        logger.info(
            "expression_to_domain held-out %s: %s (%.0f s)",
            held_out,
            ", ".join(f"{method} F1 {per_section[method][held_out]['macro_f1']:.3f}" for method in DOMAIN_METHODS),
            time.perf_counter() - start,
        )
    return {method: summarise(scores) for method, scores in per_section.items()}


def domains(
    adatas: Mapping[str, AnnData],
    *,
    label_key: str = "layer",
    sections: Sequence[str] | None = None,
    epochs: int = 20,
    seed: int = 0,
    n_genes: int = 1000,
    n_top_genes: int = N_TOP_GENES,
    config: OmniSTConfig | None = None,
    models: ModelCache | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Cluster each section into spatial domains and score them against ``obs[label_key]`` by ARI.

    k-means (``n_init=10``, ``random_state=seed``) with k = the number of labels in the section clusters:

    - ``omnist``: ``X_omnist`` from :func:`omnist.tl.embed` with a model trained on the *other* sections of
      ``adatas`` and their labels (the same model as :func:`expression_to_domain` when ``models`` is shared),
      so the evaluated section's labels never reach the model;
    - ``kmeans_pca``: 30 PCA components of the section's log1p(CP10k) highly variable genes;
    - ``kmeans_pca_smoothed``: the same components averaged over each spot and its 6 nearest spatial neighbours.

    Every spot is clustered, and the ARI is computed on the labelled ones.

    Returns
    -------
    ``{method: {"ari": float, "per_section": {section: {"ari": float}}}}``; ``ari`` averages the sections.
    """
    sections = list(adatas) if sections is None else list(sections)
    check_sections(adatas, sections, label_key)
    models = ModelCache() if models is None else models
    per_section: dict[str, dict] = {method: {} for method in CLUSTER_METHODS}

    for name in sections:
        start = time.perf_counter()
        adata = adatas[name]
        scored = scored_mask(adata.obs[label_key])
        true = adata.obs[label_key].to_numpy(dtype=object)[scored].astype(str)
        n_clusters = len(set(true))

        components = pca_embedding(adata, n_top_genes=n_top_genes, seed=seed)
        clusters = cluster_kmeans(components, n_clusters, seed)
        per_section["kmeans_pca"][name] = {"ari": float(adjusted_rand_score(true, clusters[scored]))}
        clusters = cluster_kmeans(smooth_spatially(adata, components), n_clusters, seed)
        per_section["kmeans_pca_smoothed"][name] = {"ari": float(adjusted_rand_score(true, clusters[scored]))}

        training = [other for other in adatas if other != name]
        model = models.get(
            adatas,
            training,
            label_key=label_key,
            epochs=epochs,
            seed=seed,
            n_genes=n_genes,
            config=config,
            progress=progress,
        )
        embedding = embed(adata, model=model, key_added="bench", copy=True, progress=False).obsm["bench"]
        clusters = cluster_kmeans(np.asarray(embedding), n_clusters, seed)
        per_section["omnist"][name] = {"ari": float(adjusted_rand_score(true, clusters[scored]))}
        logger.info(
            "domains %s: %s (%.0f s)",
            name,
            ", ".join(f"{method} ARI {per_section[method][name]['ari']:.3f}" for method in CLUSTER_METHODS),
            time.perf_counter() - start,
        )
    return {method: summarise(scores) for method, scores in per_section.items()}


def check_sections(adatas: Mapping[str, AnnData], sections: Sequence[str], label_key: str) -> None:
    """Raise unless ``sections`` are loaded, at least 2 sections are loaded and all have ``obs[label_key]``."""
    unknown = [name for name in sections if name not in adatas]
    if unknown:
        raise ValueError(f"Sections {unknown} are not among the loaded sections {list(adatas)}.")
    if not sections:
        raise ValueError("No section to evaluate: pass at least one section name.")
    if len(adatas) < 2:
        raise ValueError(f"Training on the other sections needs at least 2 sections, got {list(adatas)}.")
    for name, adata in adatas.items():
        if label_key not in adata.obs:
            raise KeyError(f"Section {name} has no obs[{label_key!r}]; columns: {list(adata.obs.columns)}.")
