"""Run an instruction on an AnnData and write the result into the slot its output modality uses."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from anndata import AnnData

from omnist import __version__
from omnist._warnings import warn
from omnist.data.expression import log1p_cp10k
from omnist.data.labels import describe_label, label_query
from omnist.model import OmniST
from omnist.model._omnist import expression_frame
from omnist.tasks import TEXT_PLACEHOLDER
from omnist.tl._inputs import spot_inputs
from omnist.tl._regions import rank_regions, region_codes, region_key
from omnist.tl._validate import check_adata, check_key, check_model

logger = logging.getLogger(__name__)

# Keys of a region_to_text entry in uns that are not regions.
REGION_RESERVED = frozenset({"groupby", "regions", "params"})


def translate(
    adata: AnnData,
    instruction: str,
    *,
    model: OmniST,
    key_added: str | None = None,
    genes: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    groupby: str | None = None,
    gallery: AnnData | None = None,
    top_k: int = 10,
    patches_key: str = "omnist_patches",
    layer: str | None = None,
    batch_size: int = 256,
    progress: bool = True,
    copy: bool = False,
) -> AnnData | None:
    """Carry out an instruction such as ``"predict expression from H&E"`` on every spot.

    The instruction is matched to one of the model's tasks by sentence-embedding similarity, and the
    backbone reads the instruction as written, so paraphrases work.

    Parameters
    ----------
    adata
        Spots with the input modality of the task: an H&E image in ``uns["spatial"]`` (or patches in
        ``obsm[patches_key]``) for image tasks, counts in ``X`` for expression tasks.
    instruction
        What to do, in plain English.
    model
        A trained :class:`~omnist.model.OmniST`.
    key_added
        Where the result goes; defaults to ``"omnist_" + task name``.
    genes
        Genes to predict for expression output; defaults to the genes named in the instruction, else every
        gene of the model's vocabulary.
    labels
        Candidate label names for label and description tasks. Names never seen in training work too
        (zero-shot), since the text decoder scores any text. Defaults to the labels the model was trained on.
    groupby
        ``obs`` column of regions, required by ``region_to_text``.
    gallery
        Spots whose H&E patches ``expression_to_image`` searches; defaults to ``adata`` itself, which then
        needs an image.
    top_k
        Number of best-matching patches ``expression_to_image`` reports per spot.
    patches_key
        ``obsm`` key of precomputed patches (of ``adata`` and of ``gallery``).
    layer
        Layer with raw counts instead of ``X``.
    batch_size
        Spots per inference batch.
    progress
        Show progress bars.
    copy
        Return a new AnnData and leave ``adata`` untouched.

    Returns
    -------
    ``None``, or the new AnnData when ``copy=True``. By output:

    - expression: ``obsm[key]``, a DataFrame of log1p(CP10k) with gene-symbol columns;
    - labels: ``obs[key]`` (categorical) and ``obsm[key + "_probabilities"]`` (DataFrame, one column per
      label); cell-type proportions go to ``obsm[key]``;
    - retrieval (``text_to_region``): ``obs[key]``, the probability the text decoder gives the query against
      the label texts the model was trained on (a score in [0, 1] per spot);
    - description (``region_to_text``): ``uns[key][region]`` with ``texts``, ``scores``, ``probabilities``
      and ``enrichment``, best first, and ``n_spots`` (see :func:`rank_regions`); ``uns[key]["groupby"]``
      and ``uns[key]["regions"]``, the region names. A "/" in a name becomes "∕" (U+2215) in its key, as
      h5ad files cannot store "/" in a key;
    - patch retrieval (``expression_to_image``): ``obsm[key]``, a DataFrame of the ``top_k`` gallery spot
      names whose patches match each spot's expression best (columns ``"1"`` … best first), and
      ``obsm[key + "_scores"]``, their cosine similarities; without ``gallery``, also ``obs[key + "_rank"]``,
      the rank of the spot's own patch (1 = best); ``uns[key]["n_gallery"]``, the number of patches searched;
    - text input (``text_to_expression``): ``uns[key]["profile"]``, a one-row DataFrame of log1p(CP10k)
      predicted for the query, ``uns[key]["query"]``, and, when ``adata`` measures at least two of the
      genes, ``obs[key]``, each spot's Pearson correlation with what sets the profile apart from the
      profiles of the trained labels;
    - embedding: ``obsm[key]``.

    Every call writes ``uns[key]["params"]`` (instruction, task, similarity, model id, omnist version, date).

    Raises
    ------
    ValueError
        If the instruction matches none of the model's tasks (the message lists the closest ones).
    KeyError
        If the input modality the task needs is missing, or a requested gene is not in the vocabulary.

    Examples
    --------
    >>> omnist.tl.translate(adata, "predict expression from H&E", model=model)
    >>> omnist.tl.translate(adata, "assign each spot to its cortical layer", model=model, key_added="pred_layer")
    >>> omnist.tl.translate(adata, "find white matter", model=model, key_added="wm_score")
    """
    start = time.perf_counter()
    check_adata(adata, require_genes=False)
    check_model(model)
    resolved = model.resolve(instruction)
    task = resolved.task
    check_adata(adata, require_genes=bool({"expression", "graph"} & set(task.inputs)))
    key = key_added or f"omnist_{task.name}"
    check_key(key)
    logger.info("instruction %r resolved to task %s (similarity %.2f)", instruction, task.name, resolved.score)
    if task.name == "region_to_text" and (groupby is None or groupby not in adata.obs):
        raise KeyError(f"region_to_text needs groupby= naming an obs column of regions; got {groupby!r}.")
    region_plan = None
    if task.name == "region_to_text":
        # Region names are checked before the model runs.
        region_plan = region_codes(adata, groupby, reserved=REGION_RESERVED)
    if task.target == "image":
        if top_k < 1:
            raise ValueError(f"top_k={top_k} must be at least 1.")
        if gallery is not None:
            check_adata(gallery, "gallery", require_genes=False)
        try:
            gallery_inputs = spot_inputs(
                adata if gallery is None else gallery, model, ("image",), patches_key=patches_key, progress=progress
            )
        except KeyError as error:
            owner = "adata" if gallery is None else "gallery"
            raise KeyError(
                f"{task.name} searches the H&E patches of {owner}, which has none: {error.args[0]} Pass gallery= an "
                "AnnData with an image to search another section."
            ) from error

    if task.output == "expression":
        chosen = list(genes) if genes is not None else (resolved.genes or model.genes)
        chosen = [model.vocabulary.symbols[position] for position in model.vocabulary.index(chosen)]
    if "text" in task.inputs:
        return _translate_text(adata, instruction, resolved, model, key, chosen, layer, copy, start)
    inputs = spot_inputs(adata, model, task.inputs, patches_key=patches_key, layer=layer, progress=progress)
    states = model.encode_spots(inputs, instruction, task.inputs, task.output, batch_size=batch_size, progress=progress)

    obs_columns: dict[str, object] = {}
    obsm_entries: dict[str, object] = {}
    uns_entry: dict[str, object] = {}
    if task.output == "expression":
        values = model.expression_from_states(states, chosen, batch_size=batch_size)
        obsm_entries[key] = expression_frame(values, adata.obs_names, chosen)
    elif task.target == "image":
        gallery_names = (adata if gallery is None else gallery).obs_names
        patch_states = model.encode_spots(
            gallery_inputs, instruction, ("image",), task.output, batch_size=batch_size, progress=progress
        )
        own = gallery is None or gallery is adata
        top, scores, ranks = _match_patches(
            model.spot_embeddings(states), model.spot_embeddings(patch_states), top_k, own=own
        )
        columns = pd.Index([str(i + 1) for i in range(top.shape[1])], dtype=str)
        names = np.asarray(gallery_names, dtype=object)[top]
        obsm_entries[key] = pd.DataFrame(names, index=adata.obs_names, columns=columns)
        obsm_entries[f"{key}_scores"] = pd.DataFrame(scores, index=adata.obs_names, columns=columns)
        if ranks is not None:
            obs_columns[f"{key}_rank"] = ranks
        uns_entry["n_gallery"] = len(gallery_names)
    elif task.output == "embedding":
        obsm_entries[key] = model.spot_embeddings(states)
    elif task.name == "text_to_region":
        query = resolved.query or instruction
        text = label_query(query)
        embeddings = model.text_embeddings(states)
        obs_columns[key] = _query_probability(model, embeddings, text, task.name)
        uns_entry["query"] = text
    elif task.name == "region_to_text":
        values, texts = _candidates(model, instruction, labels, task.name)
        embeddings = model.text_embeddings(states)
        codes, _, regions = region_plan
        masks = {region: codes == code for region, code in regions.items()}
        rankings = rank_regions(model.text_probabilities(embeddings, texts), masks, values)
        for region, ranking in rankings.items():
            uns_entry[region_key(region)] = {
                "texts": ranking["label"].to_numpy(dtype=str),
                "scores": ranking["score"].to_numpy(),
                "probabilities": ranking["probability"].to_numpy(),
                "enrichment": ranking["enrichment"].to_numpy(),
                "n_spots": int(masks[region].sum()),
            }
        uns_entry["groupby"] = groupby
        uns_entry["regions"] = np.asarray(list(regions), dtype=str)
    else:
        values, texts = _candidates(model, instruction, labels, task.name)
        embeddings = model.text_embeddings(states)
        probabilities = model.text_probabilities(embeddings, texts)
        frame = pd.DataFrame(probabilities, index=adata.obs_names, columns=pd.Index(values, dtype=str))
        if _is_proportion_task(model, task.name) and labels is None:
            obsm_entries[key] = frame
        else:
            obs_columns[key] = pd.Categorical(
                np.asarray(values, dtype=object)[probabilities.argmax(axis=1)], categories=values
            )
            obsm_entries[f"{key}_probabilities"] = frame

    return _write(adata, key, obs_columns, obsm_entries, uns_entry, resolved, model, copy, start)


def _write(adata, key, obs_columns, obsm_entries, uns_entry, resolved, model, copy, start) -> AnnData | None:
    """Write the results and ``uns[key]["params"]`` into ``adata`` or a copy of it."""
    adata = adata.copy() if copy else adata
    for column, value in obs_columns.items():
        adata.obs[column] = value
    for name, value in obsm_entries.items():
        adata.obsm[name] = value
    uns_entry["params"] = {
        "instruction": resolved.instruction,
        "task": resolved.task.name,
        "similarity": float(resolved.score),
        "model_id": model.config.model_id,
        "omnist_version": __version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    adata.uns[key] = uns_entry
    logger.info("finished %s into %r (%.1f s)", resolved.task.name, key, time.perf_counter() - start)
    return adata if copy else None


def _translate_text(adata, instruction, resolved, model, key, genes, layer, copy, start) -> AnnData | None:
    """Run a task whose input is the query text of the instruction; it writes one expression profile.

    Each spot then gets a match score: the Pearson correlation, over the genes it measured, between its
    expression standardised per gene within the section and the contrast of the query. The contrast is the
    query's standardised profile minus the mean standardised profile of the label texts the task learned.
    """
    query = resolved.query
    if not query:
        raise ValueError(
            f"Instruction {instruction!r} names no text for task {resolved.task.name!r}: write it after the fixed "
            "words or in quotes, e.g. 'predict the expression profile of \"invasive cancer\"'."
        )
    records = [record for record in model.label_sets.values() if resolved.task.name in record["tasks"]]
    texts = [text for record in records for text in record["texts"]]
    # Training reads the label text as input under an instruction that names no label; inference does the same.
    neutral = instruction.replace(query, TEXT_PLACEHOLDER) if query in instruction else instruction
    states = model.encode_texts([describe_label(query), *dict.fromkeys(texts)], neutral, resolved.task.output)
    profile = model.expression_from_states(states[:1], genes)
    uns_entry: dict[str, object] = {"query": query, "profile": expression_frame(profile, pd.Index([query]), genes)}
    obs_columns: dict[str, object] = {}
    positions, names = model.vocabulary.lookup(adata.var_names, adata.var.get("gene_symbol"))
    requested = set(model.vocabulary.index(genes).tolist())
    pairs = [(int(position), name) for position, name in zip(positions, names, strict=True) if position in requested]
    if len(pairs) >= 2:
        symbols = [model.vocabulary.symbols[position] for position, _ in pairs]
        standardised = model.expression_from_states(states, symbols, standardised=True)
        contrast = standardised[0] - (standardised[1:].mean(axis=0) if len(standardised) > 1 else 0.0)
        values = log1p_cp10k(adata, [name for _, name in pairs], layer)
        std = values.std(axis=0)
        varies = std > 1e-6
        spots = (values[:, varies] - values[:, varies].mean(axis=0)) / std[varies]
        obs_columns[key] = _row_pearson(spots, contrast[varies])
    elif adata.n_vars:
        warn(
            f"adata measures {len(pairs)} of the {len(genes)} profile genes, so obs[{key!r}] (the match score of "
            "each spot) is not written. Check that var_names or var['gene_symbol'] use the model's gene symbols.",
        )
    return _write(adata, key, obs_columns, {}, uns_entry, resolved, model, copy, start)


def _row_pearson(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Return the Pearson correlation of every row with ``reference``; 0 where a row or it is constant."""
    rows = rows - rows.mean(axis=1, keepdims=True)
    reference = reference - reference.mean()
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(reference)
    return np.divide(rows @ reference, norms, out=np.zeros(len(rows)), where=norms > 0)


def _match_patches(
    queries: np.ndarray, patches: np.ndarray, top_k: int, *, own: bool, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return the ``top_k`` patch indices and cosine similarities per query, best first.

    With ``own`` (query i and patch i are the same spot) also return the rank of each spot's own patch,
    1 = best, with ties counted in the spot's favour.
    """
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(min=1e-12)
    patches = patches / np.linalg.norm(patches, axis=1, keepdims=True).clip(min=1e-12)
    top_k = min(top_k, len(patches))
    top = np.empty((len(queries), top_k), dtype=np.int64)
    scores = np.empty((len(queries), top_k), dtype=np.float32)
    ranks = np.empty(len(queries), dtype=np.int64) if own else None
    for start in range(0, len(queries), chunk):
        similarity = queries[start : start + chunk] @ patches.T
        best = np.argpartition(-similarity, top_k - 1, axis=1)[:, :top_k]
        order = np.argsort(-np.take_along_axis(similarity, best, axis=1), axis=1, kind="stable")
        top[start : start + chunk] = np.take_along_axis(best, order, axis=1)
        scores[start : start + chunk] = np.take_along_axis(similarity, top[start : start + chunk], axis=1)
        if ranks is not None:
            rows = np.arange(len(similarity))
            own_similarity = similarity[rows, start + rows]
            ranks[start : start + chunk] = 1 + (similarity > own_similarity[:, None]).sum(axis=1)
    return top, scores, ranks


def _query_probability(model: OmniST, embeddings, query: str, task_name: str) -> np.ndarray:
    """Return, per spot, the softmax probability of the query among the query and the trained label texts.

    Scoring against the known labels makes the score open-set: a spot that matches a trained label well
    gives the query little probability, while a spot that matches none of them (e.g. a region left out of
    training) gives it more. Label texts nearly identical to the query (cosine > 0.9) are dropped, so that
    a query naming a trained label does not compete with itself.
    """
    texts = [text for record in model.label_sets.values() if task_name in record["tasks"] for text in record["texts"]]
    texts = list(dict.fromkeys(texts))
    if texts:
        similarity = model.text.embed(texts) @ model.text.embed([query])[0]
        texts = [text for text, value in zip(texts, similarity, strict=True) if value <= 0.9]
    return model.text_probabilities(embeddings, [query, *texts])[:, 0]


def _is_proportion_task(model: OmniST, task_name: str) -> bool:
    return any(
        target.startswith("obsm:") and task_name in record["tasks"] for target, record in model.label_sets.items()
    )


def _candidates(
    model: OmniST, instruction: str, labels: Sequence[str] | None, task_name: str = ""
) -> tuple[list[str], list[str]]:
    """Return candidate label values and the texts the decoder scores them by.

    Without ``labels``, the candidates are the label sets the task was trained on. When there are several, the
    one whose key is closest to the instruction is used, with a warning.
    """
    if labels is not None:
        values = [str(label) for label in dict.fromkeys([labels] if isinstance(labels, str) else labels)]
        if not values:
            raise ValueError("labels is empty: pass at least one candidate label.")
        return values, [describe_label(value) for value in values]
    targets = [target for target, record in model.label_sets.items() if task_name in record["tasks"]]
    targets = targets or list(model.label_sets)
    if not targets:
        raise ValueError("The model was trained on no labels: pass candidate names with labels=[...].")
    if len(targets) > 1:
        names = [target.split(":", 1)[1].replace("_", " ") for target in targets]
        similarity = model.text.embed(names) @ model.text.embed([instruction])[0]
        chosen = targets[int(np.argmax(similarity))]
        warn(
            f"The model has several label sets {targets}, so {chosen!r}, the closest to the instruction, is used. "
            "Pass labels=[...] to choose.",
        )
        targets = [chosen]
    record = model.label_sets[targets[0]]
    return list(record["values"]), list(record["texts"])
