"""The omnist benchmark: tasks on real sections, baselines in the same folds, a JSON report."""

from omnist.bench._baselines import mean_predictor, ridge_probe
from omnist.bench._image_to_expression import format_table, image_to_expression, load_image_sections
from omnist.bench._metrics import mean_pearson, pearson_per_gene

__all__ = [
    "format_table",
    "image_to_expression",
    "load_image_sections",
    "mean_pearson",
    "mean_predictor",
    "pearson_per_gene",
    "ridge_probe",
]
