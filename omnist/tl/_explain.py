"""Explain regions of a section in sentences built only from measured evidence.

The evidence for each region is its identity (the backbone's ``region_to_text`` ranking of candidate labels),
its marker genes (Wilcoxon test against all other spots), its cell-type composition and the regions it borders
in the spatial graph. When the model and the section allow it, the identity read from the H&E image alone
is evidence too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import torch
from anndata import AnnData

from omnist import __version__
from omnist._warnings import warn
from omnist.data.expression import counts_matrix
from omnist.data.graph import neighbour_table
from omnist.data.labels import describe_label
from omnist.data.spatial import get_library_id, image_source
from omnist.model import OmniST
from omnist.tl._inputs import check_gene_coverage, spot_inputs
from omnist.tl._regions import rank_regions, region_codes, region_key
from omnist.tl._validate import check_adata, check_count, check_key, check_model

logger = logging.getLogger(__name__)

REGION_TASK = "region_to_text"
IMAGE_TASK = "image_to_domain"
COMPOSITION_TASK = "expression_to_cell_type"

# A top label whose identity score beats the runner-up's by less than this is reported as uncertain.
UNCERTAIN_MARGIN = 0.05
# Marker genes must pass this Benjamini-Hochberg adjusted p-value and have a positive log fold change.
MARKER_ALPHA = 0.05
# Cell types and neighbouring regions named in the sentences; the stored tables keep all of them.
N_COMPOSITION_NAMED = 3
N_NEIGHBOURS_NAMED = 2
# Rows of a composition table may miss a sum of 1 by this much.
COMPOSITION_TOLERANCE = 0.01

LLM_PROMPT = (
    "Rephrase the following description of a tissue region as fluent prose for a pathologist. Keep every "
    "label, gene name and number exactly as written and add no new facts.\n\n{text}\n\nRephrased description:"
)
LLM_EXTRA_TOKENS = 64


def explain(
    adata: AnnData,
    *,
    groupby: str,
    groups: str | Sequence[str] | None = None,
    model: OmniST,
    key_added: str = "omnist_explain",
    n_genes: int = 10,
    labels: Sequence[str] | None = None,
    composition_key: str | None = None,
    llm: str | Path | None = None,
    layer: str | None = None,
    patches_key: str = "omnist_patches",
    progress: bool = False,
) -> None:
    """Explain each region of ``obs[groupby]`` in sentences grounded in the model and the data.

    For every region the evidence is:

    - identity: candidate labels ranked from the spots' label probabilities under task ``region_to_text``
      (see :func:`omnist.tl.rank_regions`): the geometric mean of the region's mean probability of a label and
      its enrichment over the whole section, with the margin of the top label over the runner-up;
    - marker genes: :func:`scanpy.tl.rank_genes_groups` (Wilcoxon, the region against all other spots) on a
      log1p(CP10k) copy of the counts, keeping genes with adjusted p < 0.05 and a positive log fold change;
    - composition: the mean of ``obsm[composition_key]`` over the region, else the mean cell-type
      proportions the model predicts (task ``expression_to_cell_type``) when it was trained on them;
    - neighbours: the fraction of the region's spatial-graph edges (6 nearest spots per spot, from
      ``obsp["spatial_connectivities"]`` or built on a copy) that end in each other region;
    - image support: when the model has ``image_to_domain`` and the section has an H&E image or patches,
      the identity ranking from the image alone and whether its top label agrees.

    The sentences in ``text`` state only these facts. They call the identity uncertain when the margin is
    below 0.05, and state when the H&E alone ranks another label first. The section is ``adata``: pass one
    section at a time, so that enrichment is measured against the tissue the region belongs to.

    Parameters
    ----------
    adata
        A section with raw counts in ``X`` (or ``layer``), coordinates in ``obsm["spatial"]`` and the regions
        in ``obs[groupby]``.
    groupby
        ``obs`` column of regions: pathologist annotations, clusters, predicted domains.
    groups
        Regions to explain; defaults to every category of ``obs[groupby]`` that has spots.
    model
        A trained :class:`~omnist.model.OmniST` with the ``region_to_text`` task.
    key_added
        The explanations go to ``uns[key_added]``.
    n_genes
        Maximum number of marker genes per region.
    labels
        Candidate identities. Defaults to the model's label set for ``groupby`` when it was trained on that
        column, else to every ``obs`` label set the model was trained on.
    composition_key
        ``obsm`` key of a cell-type proportion DataFrame (e.g. ``"proportions_major"``).
    llm
        Folder of a local Hugging Face causal language model. When given, each explanation is also
        rephrased by it into ``text_llm``; ``text`` stays the grounded version.
    layer
        Layer with raw counts instead of ``X``.
    patches_key
        ``obsm`` key of precomputed patches for the image support.
    progress
        Show progress bars.

    Returns
    -------
    ``None``. Writes only ``uns[key_added]``: one dict per region, keyed by the region name as a string,
    plus ``"params"``. h5ad files cannot store "/" in a key, so in the key a "/" of the name becomes "∕"
    (U+2215); ``params["groups"]`` lists the region names and ``params["keys"]`` their keys in the same
    order. A region's dict holds:

    - ``text``: the explanation (str); ``text_llm`` (str) too when ``llm`` is given;
    - ``n_spots``: spots in the region (int);
    - ``identity``: DataFrame with columns ``label``, ``score``, ``probability`` (mean over the region's
      spots) and ``enrichment`` (``probability`` over the label's mean probability in the section), best first;
    - ``margin``: top score minus runner-up score (float, NaN with a single candidate);
    - ``markers``: DataFrame with columns ``gene`` (the ``var_names`` entry), ``symbol`` (from
      ``var["gene_symbol"]`` when present, else ``gene``), ``score`` (Wilcoxon z-score), ``pvals_adj`` and
      ``logfoldchanges``, best first;
    - ``composition``: DataFrame with columns ``cell_type`` and ``fraction``, largest first (empty when no
      composition is available); ``composition_source``: ``"obsm:<key>"``, ``"predicted"`` or ``""``;
    - ``neighbors``: DataFrame with columns ``region`` and ``fraction``, largest first. Fractions count all
      edges leaving the region's spots, so the rest are edges inside the region or to unlabelled spots;
    - ``image_identity`` (DataFrame like ``identity``) and ``image_agrees`` (bool), only with image support.

    The tables are DataFrames so that the result survives :meth:`~anndata.AnnData.write_h5ad`.

    Raises
    ------
    KeyError
        If ``groupby`` is not an ``obs`` column, a group is not one of its categories (the message lists the
        available ones), or ``composition_key`` is not in ``obsm``.
    ValueError
        If the model lacks ``region_to_text``, has no label set and ``labels`` is None, or ``n_genes`` < 0.
    FileNotFoundError
        If ``llm`` is not an existing folder.

    Examples
    --------
    >>> omnist.tl.explain(adata, groupby="pathology", model=model, composition_key="proportions_major")
    >>> print(adata.uns["omnist_explain"]["invasive cancer"]["text"])
    """
    start = time.perf_counter()
    check_adata(adata)
    check_model(model)
    check_key(key_added)
    _check_one_section(adata)
    codes, names, regions = region_codes(adata, groupby, groups, reserved={"params"})
    check_count(n_genes, "n_genes", 0)
    if composition_key is not None:
        _check_composition(adata, composition_key)
    llm_path = _check_llm_path(llm)
    task_names = {task.name for task in model.tasks}
    if REGION_TASK not in task_names:
        raise ValueError(
            f"The model was not trained on {REGION_TASK!r} (its tasks: {sorted(task_names)}): train it on sections "
            "whose instructions come from omnist.pp.build_instructions(adata, label_keys=[...])."
        )
    values, texts = _identity_candidates(model, groupby, labels)
    check_gene_coverage(adata, model)
    logger.info("explaining %d regions of %r with %d candidate labels", len(regions), groupby, len(values))

    masks = {region: codes == index for region, index in regions.items()}
    identity = _region_rankings(adata, model, REGION_TASK, masks, values, texts, patches_key, layer, progress)
    image_identity = {}
    if IMAGE_TASK in task_names and _has_image(adata, patches_key):
        image_identity = _region_rankings(adata, model, IMAGE_TASK, masks, values, texts, patches_key, layer, progress)
    markers = marker_genes(adata, codes, regions, n_genes, layer)
    compositions, composition_source = _compositions(adata, model, masks, composition_key, layer, progress)
    neighbours = neighbour_fractions(adata, codes, names, regions)

    entry: dict[str, object] = {}
    for region, mask in masks.items():
        record = _region_record(
            region,
            mask,
            identity[region],
            image_identity.get(region),
            markers[region],
            compositions.get(region),
            composition_source,
            neighbours[region],
        )
        record["text"] = _compose_text(region, record, n_genes)
        entry[region_key(region)] = record
    if llm_path is not None:
        rephrased = rephrase(llm_path, {key: record["text"] for key, record in entry.items()})
        for key, text in rephrased.items():
            entry[key]["text_llm"] = text

    entry["params"] = {
        "groupby": groupby,
        "groups": np.asarray(list(regions), dtype=str),
        "keys": np.asarray([region_key(region) for region in regions], dtype=str),
        "candidates": np.asarray(values, dtype=str),
        "n_genes": int(n_genes),
        "composition_key": composition_key or "",
        "marker_method": "wilcoxon",
        "marker_alpha": MARKER_ALPHA,
        "uncertain_margin": UNCERTAIN_MARGIN,
        "llm": str(llm_path) if llm_path is not None else "",
        "model_id": model.config.model_id,
        "omnist_version": __version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    adata.uns[key_added] = entry
    logger.info("finished explaining %d regions into %r (%.1f s)", len(regions), key_added, time.perf_counter() - start)


def _region_record(
    region, mask, identity, image_identity, markers, composition, composition_source, neighbours
) -> dict[str, object]:
    """Collect one region's evidence in the layout that ``uns[key_added][region]`` documents."""
    if composition is None:
        composition = _composition_frame(pd.Series(dtype=np.float64))
    record: dict[str, object] = {
        "n_spots": int(mask.sum()),
        "identity": identity,
        "margin": _margin(identity),
        "markers": markers,
        "composition": composition,
        "composition_source": composition_source,
        "neighbors": neighbours,
    }
    if image_identity is not None:
        record["image_identity"] = image_identity
        record["image_agrees"] = bool(image_identity["label"].iloc[0] == identity["label"].iloc[0])
    return record


def _check_one_section(adata: AnnData) -> None:
    """Raise when ``obs["library_id"]`` names several sections; warn when only ``uns["spatial"]`` suggests it."""
    if "library_id" in adata.obs and adata.obs["library_id"].nunique() > 1:
        libraries = sorted(map(str, adata.obs["library_id"].dropna().unique()))
        raise ValueError(
            f"adata has spots of {len(libraries)} sections in obs['library_id'] ({libraries[:5]}): explain one "
            f"section at a time, e.g. adata[adata.obs['library_id'] == {libraries[0]!r}].copy()."
        )
    libraries = adata.uns.get("spatial", {}) or {}
    if "library_id" not in adata.obs and len(libraries) > 1:
        warn(
            f"adata.uns['spatial'] has {len(libraries)} libraries: if adata holds several sections, explain one "
            "section at a time, because enrichment and neighbours are measured over all spots passed.",
        )


def _check_llm_path(llm: str | Path | None) -> Path | None:
    if llm is None:
        return None
    path = Path(llm)
    if not path.is_dir():
        raise FileNotFoundError(
            f"llm={str(llm)!r} is not a folder: pass the local folder of a Hugging Face causal language model "
            "(config.json, weights and tokenizer files)."
        )
    return path


def _identity_candidates(model: OmniST, groupby: str, labels: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Return candidate label values and the texts the text decoder scores them by."""
    if labels is not None:
        values = [str(label) for label in dict.fromkeys([labels] if isinstance(labels, str) else labels)]
        if not values:
            raise ValueError("labels is empty: pass at least one candidate label.")
        return values, [describe_label(value) for value in values]
    label_sets = {target: record for target, record in model.label_sets.items() if target.startswith("obs:")}
    if f"obs:{groupby}" in label_sets:
        label_sets = {f"obs:{groupby}": label_sets[f"obs:{groupby}"]}
    if not label_sets:
        raise ValueError("The model was trained on no obs labels: pass candidate names with labels=[...].")
    candidates: dict[str, str] = {}
    for record in label_sets.values():
        for value, text in zip(record["values"], record["texts"], strict=True):
            candidates.setdefault(str(value), str(text))
    return list(candidates), list(candidates.values())


def _task_instruction(model: OmniST, name: str) -> str:
    """Return an instruction of task ``name``: the first one seen in training, else the first plain template."""
    seen = model.instructions.get(name)
    if seen:
        return seen[0]
    task = next(task for task in model.tasks if task.name == name)
    return next((template for template in task.templates if "{" not in template), task.templates[0])


def _text_embeddings(
    adata: AnnData,
    model: OmniST,
    task_name: str,
    patches_key: str = "omnist_patches",
    layer: str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Return the text-space embedding of every spot under task ``task_name``."""
    task = next(task for task in model.tasks if task.name == task_name)
    inputs = spot_inputs(
        adata, model, task.inputs, patches_key=patches_key, layer=layer, progress=progress, check_genes=False
    )
    instruction = _task_instruction(model, task_name)
    states = model.encode_spots(inputs, instruction, task.inputs, task.output, progress=progress)
    return model.text_embeddings(states)


def _region_rankings(adata, model, task_name, masks, values, texts, patches_key, layer, progress) -> dict:
    """Rank the candidates for each region from its spots' label probabilities (see :func:`rank_regions`)."""
    embeddings = _text_embeddings(adata, model, task_name, patches_key, layer, progress)
    return rank_regions(model.text_probabilities(embeddings, texts), masks, values)


def _margin(ranking: pd.DataFrame) -> float:
    if len(ranking) < 2:
        return float("nan")
    return float(ranking["score"].iloc[0] - ranking["score"].iloc[1])


def _has_image(adata: AnnData, patches_key: str) -> bool:
    if patches_key in adata.obsm:
        return True
    try:
        image_source(adata, get_library_id(adata))
    except (KeyError, ValueError):
        return False
    return True


def marker_genes(adata: AnnData, codes: np.ndarray, regions: dict[str, int], n_genes: int, layer: str | None) -> dict:
    """Return the marker-gene table of each region: Wilcoxon test of the region against all other spots.

    The test runs once for all regions on a log1p(CP10k) copy of the counts, so ``adata`` is not modified.
    Regions with fewer than 2 spots cannot be tested and get an empty table.
    """
    empty = pd.DataFrame(
        {
            "gene": pd.Series(dtype=object),
            "symbol": pd.Series(dtype=object),
            "score": pd.Series(dtype=np.float64),
            "pvals_adj": pd.Series(dtype=np.float64),
            "logfoldchanges": pd.Series(dtype=np.float64),
        }
    )
    testable = [region for region, index in regions.items() if (codes == index).sum() >= 2]
    tables = {region: empty.copy() for region in regions}
    if not testable or n_genes == 0:
        return tables

    counts = counts_matrix(adata, layer)
    view = AnnData(X=counts.astype(np.float32, copy=True), obs=pd.DataFrame(index=adata.obs_names.copy()))
    view.var_names = adata.var_names.copy()
    # Groups are category codes, so any region name works; "-1" (unlabelled spots) is never tested.
    view.obs["region"] = pd.Categorical(codes.astype(str))
    sc.pp.normalize_total(view, target_sum=1e4)
    sc.pp.log1p(view)
    sc.tl.rank_genes_groups(
        view,
        "region",
        groups=[str(regions[region]) for region in testable],
        reference="rest",
        method="wilcoxon",
        use_raw=False,
        n_genes=view.n_vars,
        key_added="markers",
    )
    symbols = pd.Series(adata.var_names.astype(str), index=adata.var_names)
    if "gene_symbol" in adata.var:
        recorded = adata.var["gene_symbol"].astype(object)
        symbols = symbols.where(recorded.isna() | (recorded.astype(str) == ""), recorded.astype(str))
    for region in testable:
        table = sc.get.rank_genes_groups_df(view, group=str(regions[region]), key="markers")
        keep = (table["pvals_adj"] < MARKER_ALPHA) & (table["logfoldchanges"] > 0)
        table = table.loc[keep].sort_values("scores", ascending=False, kind="stable").head(n_genes)
        tables[region] = pd.DataFrame(
            {
                "gene": table["names"].astype(str).to_numpy(dtype=object),
                "symbol": symbols.loc[table["names"].astype(str)].to_numpy(dtype=object),
                "score": table["scores"].to_numpy(dtype=np.float64),
                "pvals_adj": table["pvals_adj"].to_numpy(dtype=np.float64),
                "logfoldchanges": table["logfoldchanges"].to_numpy(dtype=np.float64),
            }
        )
    return tables


def _composition_frame(mean: pd.Series) -> pd.DataFrame:
    """Return the composition table, largest first; a region whose spots all lack proportions gets none."""
    mean = mean.dropna().sort_values(ascending=False, kind="stable")
    return pd.DataFrame(
        {"cell_type": mean.index.astype(str).to_numpy(dtype=object), "fraction": mean.to_numpy(dtype=np.float64)}
    )


def _check_composition(adata: AnnData, key: str) -> None:
    """Raise unless ``obsm[key]`` has one row of non-negative fractions summing to 1 per spot (NaN rows allowed)."""
    if key not in adata.obsm:
        raise KeyError(f"composition_key {key!r} is not in adata.obsm; keys: {list(adata.obsm)}.")
    table = adata.obsm[key]
    try:
        values = np.asarray(table.to_numpy() if isinstance(table, pd.DataFrame) else table, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"adata.obsm[{key!r}] is not numeric ({error}): pass cell-type proportions.") from error
    if values.ndim != 2:
        raise ValueError(f"adata.obsm[{key!r}] has shape {values.shape}: pass one row of cell-type fractions per spot.")
    rows = values[np.isfinite(values).all(axis=1)]
    sums = rows.sum(axis=1)
    if (rows < 0).any() or (np.abs(sums - 1.0) > COMPOSITION_TOLERANCE).any():
        raise ValueError(
            f"adata.obsm[{key!r}] does not contain proportions: values range over [{rows.min():.3g}, {rows.max():.3g}] "
            f"and rows sum to between {sums.min():.3g} and {sums.max():.3g}. Pass non-negative cell-type "
            "fractions whose rows sum to 1, e.g. abundances divided by their row sums."
        )


def _compositions(adata, model, masks, composition_key, layer, progress) -> tuple[dict, str]:
    """Return the mean composition of each region and where it comes from."""
    if composition_key is not None:
        table = adata.obsm[composition_key]
        if not isinstance(table, pd.DataFrame):
            table = pd.DataFrame(np.asarray(table), index=adata.obs_names)
        table = table.astype(np.float64)
        table.columns = table.columns.astype(str)
        source = f"obsm:{composition_key}"
        return {region: _composition_frame(table.loc[mask].mean(axis=0)) for region, mask in masks.items()}, source

    proportion_sets = [
        record
        for target, record in model.label_sets.items()
        if target.startswith("obsm:") and COMPOSITION_TASK in record["tasks"]
    ]
    if not proportion_sets or COMPOSITION_TASK not in {task.name for task in model.tasks}:
        return {}, ""
    record = proportion_sets[0]
    embeddings = _text_embeddings(adata, model, COMPOSITION_TASK, "omnist_patches", layer, progress)
    probabilities = model.text_probabilities(embeddings, record["texts"])
    table = pd.DataFrame(probabilities, columns=pd.Index([str(value) for value in record["values"]]))
    return {region: _composition_frame(table.loc[mask].mean(axis=0)) for region, mask in masks.items()}, "predicted"


def neighbour_fractions(adata: AnnData, codes: np.ndarray, names: Sequence[str], regions: dict[str, int]) -> dict:
    """Return, per region, the fraction of its spots' spatial-graph edges that end in each other region.

    ``codes`` contains each spot's index into ``names`` (-1 = no region). The graph is
    :func:`omnist.data.graph.neighbour_table`: ``obsp["spatial_connectivities"]`` when present, else the 6
    nearest spots from :func:`squidpy.gr.spatial_neighbors` run on a copy of the coordinates.
    """
    table = neighbour_table(adata)
    frames = {}
    for region, index in regions.items():
        edges = table[codes == index]
        ends = codes[edges[edges >= 0]]
        others = [int(code) for code in np.unique(ends) if code >= 0 and code != index]
        fractions = pd.Series(
            {names[code]: float((ends == code).sum() / len(ends)) for code in others}, dtype=np.float64
        ).sort_values(ascending=False, kind="stable")
        frames[region] = pd.DataFrame(
            {"region": fractions.index.astype(str).to_numpy(dtype=object), "fraction": fractions.to_numpy()}
        )
    return frames


def _percent(fraction: float) -> str:
    return "<1%" if 0 < fraction < 0.005 else f"{100 * fraction:.0f}%"


def _marker_sentence(markers: pd.DataFrame, n_spots: int) -> str:
    if n_spots < 2:
        return "Marker genes were not tested because the region has a single spot."
    if len(markers):
        names = ", ".join(markers["symbol"].astype(str))
        return f"Marker genes enriched here (adjusted p < {MARKER_ALPHA:g}): {names}."
    return f"No gene is enriched here at adjusted p < {MARKER_ALPHA:g}."


def _compose_text(region: str, record: dict, n_genes: int = 10) -> str:
    """Write the explanation of one region from its evidence, one sentence per kind of evidence."""
    identity: pd.DataFrame = record["identity"]
    best = identity.iloc[0]
    top = str(best["label"])
    n_spots = record["n_spots"]
    spots = f"{n_spots} spot" if n_spots == 1 else f"{n_spots} spots"
    evidence = (
        f"mean spot probability {best['probability']:.2f}, {best['enrichment']:.2f} times its mean over the section"
    )
    if len(identity) > 1:
        runner_up, margin = str(identity["label"].iloc[1]), record["margin"]
        sentences = [
            f"Region {region} ({spots}) is most likely {top}: {evidence} "
            f"(score {best['score']:.3f}, margin {margin:.3f} over {runner_up})."
        ]
        if margin < UNCERTAIN_MARGIN:
            sentences.append(
                f"This identity is uncertain: {top} leads {runner_up} by less than {UNCERTAIN_MARGIN:.2f}."
            )
    else:
        sentences = [f"Region {region} ({spots}) has {top} as the only candidate label: {evidence}."]

    if n_genes > 0:
        sentences.append(_marker_sentence(record["markers"], n_spots))

    composition: pd.DataFrame = record["composition"]
    if len(composition):
        named = composition.head(N_COMPOSITION_NAMED)
        parts = ", ".join(f"{row.cell_type} {_percent(row.fraction)}" for row in named.itertuples(index=False))
        source = record["composition_source"]
        origin = f"mean of obsm['{source[5:]}']" if source.startswith("obsm:") else "predicted by the model"
        sentences.append(f"Composition ({origin}): {parts}.")

    neighbours: pd.DataFrame = record["neighbors"]
    if len(neighbours):
        named = neighbours.head(N_NEIGHBOURS_NAMED)
        first = named.iloc[0]
        text = f"It borders {first['region']} ({_percent(first['fraction'])} of its neighbour edges)"
        if len(named) > 1:
            second = named.iloc[1]
            text += f" and {second['region']} ({_percent(second['fraction'])})"
        sentences.append(text + ".")
    else:
        sentences.append("It borders no other region in the spatial graph.")

    if "image_identity" in record:
        image: pd.DataFrame = record["image_identity"]
        image_top, image_score = str(image["label"].iloc[0]), float(image["score"].iloc[0])
        if record["image_agrees"]:
            sentences.append(f"The H&E alone supports this: it also ranks {top} first (score {image_score:.3f}).")
        else:
            sentences.append(
                f"The H&E alone disagrees: it ranks {image_top} first (score {image_score:.3f}), not {top}."
            )
    return " ".join(sentences)


def rephrase(path: str | Path, texts: dict[str, str]) -> dict[str, str]:
    """Rephrase each text with the local causal language model in folder ``path`` (greedy decoding).

    The model and tokenizer load with ``local_files_only=True``, so nothing is downloaded. When the tokenizer
    has a chat template the prompt goes through it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    language_model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    language_model.eval()
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    logger.info("rephrasing %d explanations with the language model in %s", len(texts), path)
    out = {}
    for key, text in texts.items():
        prompt = LLM_PROMPT.format(text=text)
        if getattr(tokenizer, "chat_template", None):
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        encoded = tokenizer(prompt, return_tensors="pt")
        n_text_tokens = len(tokenizer(text)["input_ids"])
        with torch.no_grad():
            generated = language_model.generate(
                **encoded,
                max_new_tokens=n_text_tokens + LLM_EXTRA_TOKENS,
                do_sample=False,
                pad_token_id=pad_token_id,
            )
        new_tokens = generated[0, encoded["input_ids"].shape[1] :]
        # NOTE: the rephrased text is not checked against the evidence; ``text`` stays the grounded version.
        out[key] = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
    return out
