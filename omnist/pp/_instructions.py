"""Generate paraphrased (instruction, input, output, target) training pairs from what an AnnData holds."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from omnist import tasks as task_registry
from omnist.data.labels import label_query
from omnist.data.spatial import get_library_id, image_source, microns_per_pixel, spot_diameter_um
from omnist.tasks import TEXT_PLACEHOLDER

logger = logging.getLogger(__name__)

# A patch window must cover at least this many image pixels per side for image tasks to be generated.
MIN_PATCH_PIXELS = 32
COLUMNS = ["task", "instruction", "input", "output", "target"]


def build_instructions(
    adata: AnnData,
    *,
    label_keys: Sequence[str] | None = None,
    proportion_keys: Sequence[str] | None = None,
    text_keys: Sequence[str] | None = None,
    label_descriptions: dict[str, dict[str, str]] | None = None,
    extra_tasks: Sequence[str] = (),
    n_paraphrases: int = 4,
    seed: int = 0,
    key_added: str = "omnist",
) -> None:
    """Write paraphrased training instructions for every task the AnnData can teach.

    Tasks come from the registry. ``image_to_expression``, ``expression_to_image`` and ``image_to_domain``
    need an H&E image that resolves a patch to at least 32 px; tasks with expression input need counts in
    ``X``; label tasks (``expression_to_domain``, ``text_to_region``, ``region_to_text``,
    ``text_to_expression``) need ``obs`` columns in ``label_keys``; ``expression_to_cell_type`` needs
    ``obsm`` DataFrames of proportions in ``proportion_keys``; ``text_keys`` name ``obs`` columns of free
    text (e.g. cluster annotations) that serve retrieval and description. ``embed`` is always added.

    Parameters
    ----------
    adata
        A section.
    label_keys
        ``obs`` columns of categorical labels (domains, layers, pathologist regions, cell types).
    proportion_keys
        ``obsm`` keys of cell-type proportion DataFrames (rows sum to 1).
    text_keys
        ``obs`` columns of free-text annotations.
    label_descriptions
        Per label key, a description of each label value (``{"layer": {"WM": "white matter"}}``); the text
        decoder scores against ``"value: description"``.
    extra_tasks
        Names of registered user tasks to include. A task whose ``target`` is ``"obs"`` or ``"obsm"`` learns
        from each of ``label_keys`` and ``text_keys``, or of ``proportion_keys``; one with
        ``"obs:KEY"``, ``"obsm:KEY"`` or ``"expression"`` learns from that target.
    n_paraphrases
        Instruction templates drawn per task and target.
    seed
        Seed of the template draw.
    key_added
        The table goes to ``uns[key_added]["instructions"]``, descriptions to
        ``uns[key_added]["label_descriptions"]``.

    Examples
    --------
    >>> omnist.pp.build_instructions(adata, label_keys=["layer"])
    >>> adata.uns["omnist"]["instructions"].head()
    """
    label_keys, proportion_keys, text_keys = list(label_keys or []), list(proportion_keys or []), list(text_keys or [])
    for key in (*label_keys, *text_keys):
        if key not in adata.obs:
            raise KeyError(f"Label key {key!r} is not a column of adata.obs; columns: {list(adata.obs.columns)}.")
    for key in proportion_keys:
        if key not in adata.obsm:
            raise KeyError(f"Proportion key {key!r} is not in adata.obsm; keys: {list(adata.obsm)}.")
        if not isinstance(adata.obsm[key], pd.DataFrame):
            raise ValueError(f"adata.obsm[{key!r}] must be a DataFrame whose columns name the cell types.")
    if n_paraphrases < 1:
        raise ValueError(f"n_paraphrases={n_paraphrases} must be at least 1.")
    generator = np.random.default_rng(seed)
    rows: list[dict] = []

    def add(task_name: str, target: str, fill: dict[str, str]) -> None:
        spec = task_registry.get(task_name)
        templates = list(spec.templates)
        chosen = generator.choice(len(templates), size=min(n_paraphrases, len(templates)), replace=False)
        for index in sorted(chosen):
            rows.append(
                {
                    "task": spec.name,
                    "instruction": templates[index].format(**fill),
                    "input": "+".join(spec.inputs),
                    "output": spec.output,
                    "target": target,
                }
            )

    has_image = _has_usable_image(adata)
    has_expression = adata.n_vars > 0
    if has_image:
        add("image_to_expression", "expression", {})
        add("expression_to_image", "image", {})
    for key in label_keys:
        name = key.replace("_", " ")
        add("expression_to_domain", f"obs:{key}", {"label": name})
        add("region_to_text", f"obs:{key}", {})
        if has_image:
            add("image_to_domain", f"obs:{key}", {"label": name})
        descriptions = (label_descriptions or {}).get(key)
        for value in adata.obs[key].dropna().unique():
            query = label_query(value, descriptions)
            add("text_to_region", f"obs:{key}={value}", {"query": query})
    for key in text_keys:
        add("region_to_text", f"obs:{key}", {})
        for value in adata.obs[key].dropna().unique():
            add("text_to_region", f"obs:{key}={value}", {"query": str(value)})
    for key in proportion_keys:
        add("expression_to_cell_type", f"obsm:{key}", {"label": "cell type"})
    for name in extra_tasks:
        spec = task_registry.get(name)
        if ("image" in spec.inputs or spec.target == "image") and not has_image:
            raise ValueError(
                f"Task {name!r} needs an H&E image, but adata has no patches in obsm['omnist_patches'] and no image "
                "that resolves a patch to 32 px: load the section with its image or leave the task out."
            )
        if spec.target in ("obs", "obsm"):
            keys = label_keys + text_keys if spec.target == "obs" else proportion_keys
            if not keys:
                raise ValueError(
                    f"Task {name!r} learns from {spec.target} targets: pass label_keys, text_keys or proportion_keys."
                )
            for key in keys:
                add(name, f"{spec.target}:{key}", {"label": key.replace("_", " "), "query": TEXT_PLACEHOLDER})
        else:
            add(name, spec.target or "expression", {"label": "label", "query": TEXT_PLACEHOLDER})
    add("embed", "expression", {})
    # Added last, so that the template draws of the tasks above do not depend on it.
    for key in label_keys if has_expression else []:
        add("text_to_expression", f"obs:{key}", {"query": TEXT_PLACEHOLDER})

    table = pd.DataFrame(rows, columns=COLUMNS).drop_duplicates(ignore_index=True)
    store = adata.uns.setdefault(key_added, {})
    store["instructions"] = table
    if label_descriptions:
        store["label_descriptions"] = {key: dict(values) for key, values in label_descriptions.items()}
    logger.info("built %d instructions for %d tasks", len(table), table["task"].nunique())


def _has_usable_image(adata: AnnData) -> bool:
    """Return whether the image resolves a default patch window to at least ``MIN_PATCH_PIXELS`` pixels."""
    if "omnist_patches" in adata.obsm:
        return True
    try:
        library_id = get_library_id(adata)
        source = image_source(adata, library_id)
        window_px = 1.5 * spot_diameter_um(adata, library_id) / microns_per_pixel(adata, library_id)
    except (KeyError, ValueError):
        return False
    return window_px * source.scale >= MIN_PATCH_PIXELS
