"""Tasks registered in every omnist installation."""

from omnist.tasks._registry import _register_builtin
from omnist.tasks._spec import TaskSpec

BUILTIN_TASKS = (
    TaskSpec(
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
    ),
    TaskSpec(
        name="expression_to_domain",
        templates=(
            "assign each spot to its spatial domain",
            "assign each spot to its {label}",
            "label every spot with its {label} from expression",
            "which {label} does each spot belong to",
            "classify the spots into tissue regions",
            "annotate spatial domains from gene expression and neighbourhood",
            "segment the tissue into its anatomical layers",
        ),
        inputs=("expression", "graph"),
        output="text",
        target="obs",
        description="A label per spot (domain, region, layer) from its expression and neighbourhood.",
    ),
    TaskSpec(
        name="expression_to_cell_type",
        templates=(
            "predict cell type proportions from expression",
            "estimate the {label} composition of each spot",
            "deconvolve each spot into cell types",
            "what cell types make up each spot",
            "assign each cell its cell type",
        ),
        inputs=("expression",),
        output="text",
        target="obsm",
        description="Cell-type labels or proportions per spot from its expression.",
    ),
    TaskSpec(
        name="image_to_domain",
        templates=(
            "assign each spot to its {label} from the H&E image",
            "classify tissue regions from histology",
            "label the {label} of each spot from the H&E patch",
            "which region is this, judging by the stained tissue",
        ),
        inputs=("image",),
        output="text",
        target="obs",
        description="A label per spot from its H&E patch alone.",
    ),
    TaskSpec(
        name="text_to_region",
        templates=(
            "find {query}",
            "find the spots that show {query}",
            "where is the {query}",
            "highlight {query} on the tissue",
            "locate regions of {query}",
            "show me {query}",
        ),
        inputs=("expression", "graph"),
        output="text",
        target="obs",
        description="A score per spot for how well it matches a text query.",
    ),
    TaskSpec(
        name="region_to_text",
        templates=(
            "describe this region",
            "what is this region",
            "explain what this region of the tissue is",
            "name the tissue type of each region",
            "which label fits this group of spots best",
        ),
        inputs=("expression", "graph"),
        output="text",
        target="obs",
        description="Candidate texts ranked with scores for each region (group of spots).",
    ),
    TaskSpec(
        name="expression_to_image",
        templates=(
            "retrieve the H&E patch that matches each spot's expression",
            "which histology patch goes with this expression profile",
            "match every spot's transcriptome to a stained tissue patch",
            "look up H&E image patches from gene expression",
            "rank tissue image patches by how well they fit the expression of each spot",
        ),
        inputs=("expression", "graph"),
        output="embedding",
        target="image",
        description="H&E patches ranked by how well they match a spot's expression (cross-modal retrieval).",
    ),
    TaskSpec(
        name="text_to_expression",
        templates=(
            "predict the expression profile of {query}",
            "generate a typical transcriptome for {query}",
            "what gene expression goes with {query}",
            "translate the description {query} into gene expression",
        ),
        inputs=("text",),
        output="expression",
        target="obs",
        description="The expression profile (log1p CP10k) of spots that a text such as a region name describes.",
    ),
    TaskSpec(
        name="embed",
        templates=(
            "embed each spot",
            "compute a joint embedding of expression and neighbourhood",
            "represent each spot as a vector",
        ),
        inputs=("expression", "graph"),
        output="embedding",
        target="expression",
        description="A spot embedding trained by reconstructing masked genes of the spot.",
    ),
)

for _spec in BUILTIN_TASKS:
    _register_builtin(_spec)
