"""Tasks every omnist installation knows."""

from omnist.tasks._registry import _register_builtin
from omnist.tasks._spec import TaskSpec

IMAGE_TO_EXPRESSION = TaskSpec(
    name="image_to_expression",
    templates=(
        "predict expression from H&E",
        "predict gene expression from the H&E image",
        "infer the expression profile of each spot from histology",
        "estimate transcript abundance from the tissue image",
        "which genes are expressed here, judging by the H&E patch",
        "translate the histology patch into a gene expression vector",
        "impute spatial gene expression from the stained tissue",
    ),
    inputs=("image",),
    output="expression",
    target="expression",
    description="Gene expression (log1p CP10k) of each spot from its H&E patch.",
)

for _spec in (IMAGE_TO_EXPRESSION,):
    _register_builtin(_spec)
