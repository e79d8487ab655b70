"""The omnist benchmark: tasks on real sections, baselines in the same folds, a JSON report."""

from omnist.bench._baselines import mean_predictor, ridge_probe
from omnist.bench._domains import (
    DLPFC,
    HER2ST,
    LabelledDataset,
    ModelCache,
    classification_scores,
    cluster_kmeans,
    domains,
    expression_to_domain,
    hvg_expression,
    load_dlpfc,
    load_pathology_sections,
    logreg_pca,
    pca_embedding,
    smooth_spatially,
    train_label_model,
)
from omnist.bench._explain import explain_regions
from omnist.bench._expression_to_image import expression_to_image, random_retrieval, retrieval_scores, ridge_retrieval
from omnist.bench._image_to_expression import image_to_expression, load_image_sections
from omnist.bench._metrics import mean_pearson, pearson_per_gene
from omnist.bench._report import format_table, summarise, write_results
from omnist.bench._retrieval import (
    MARKER_GENES,
    REGION_QUERIES,
    auroc,
    marker_score,
    precision_at_k,
    random_scores,
    text_to_region,
    zero_shot,
)

__all__ = [
    "DLPFC",
    "HER2ST",
    "MARKER_GENES",
    "REGION_QUERIES",
    "LabelledDataset",
    "ModelCache",
    "auroc",
    "classification_scores",
    "cluster_kmeans",
    "domains",
    "expression_to_domain",
    "expression_to_image",
    "explain_regions",
    "format_table",
    "hvg_expression",
    "image_to_expression",
    "load_dlpfc",
    "load_image_sections",
    "load_pathology_sections",
    "logreg_pca",
    "marker_score",
    "mean_pearson",
    "mean_predictor",
    "pca_embedding",
    "pearson_per_gene",
    "precision_at_k",
    "random_retrieval",
    "random_scores",
    "retrieval_scores",
    "ridge_probe",
    "ridge_retrieval",
    "smooth_spatially",
    "summarise",
    "text_to_region",
    "train_label_model",
    "write_results",
    "zero_shot",
]
