"""The task registry: built-in tasks, user tasks, and instruction resolution by embedding similarity."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from omnist.tasks._spec import TaskSpec

_REGISTRY: dict[str, TaskSpec] = {}

# Cosine similarity between MiniLM sentence embeddings of the instruction and the best template of a task.
# Paraphrases of a template score about 0.6-0.9; unrelated requests stay below 0.4.
MIN_SIMILARITY = 0.45


def register(
    name: str,
    templates: Sequence[str],
    *,
    inputs: Sequence[str],
    output: str,
    target: str = "",
    description: str = "",
    overwrite: bool = False,
) -> TaskSpec:
    """Register a task so that instructions can ask for it and :func:`omnist.tl.train` learns it.

    No model code changes: the backbone reads the instruction tokens, the input adapters named in
    ``inputs`` and the decoder of ``output``.

    Parameters
    ----------
    name
        Task identifier.
    templates
        Instruction paraphrases.
    inputs
        Input modalities (``"image"``, ``"expression"``, ``"graph"``, ``"text"``).
    output
        Output modality (``"expression"``, ``"text"``, ``"embedding"``).
    target
        Where training targets come from, for example ``"expression"`` or ``"obs:layer"``.
    description
        One sentence for listings.
    overwrite
        Replace an existing task of the same name instead of raising.

    Returns
    -------
    The registered :class:`TaskSpec`.
    """
    if isinstance(templates, str):
        templates = [templates]
    spec = TaskSpec(
        name=name,
        templates=tuple(templates),
        inputs=tuple(inputs),
        output=output,
        target=target,
        description=description,
    )
    if name in _REGISTRY and _REGISTRY[name].builtin:
        if _REGISTRY[name] == spec:
            return _REGISTRY[name]
        raise ValueError(f"Task {name!r} is built in and cannot be replaced: register it under another name.")
    if name in _REGISTRY and not overwrite and _REGISTRY[name] != spec:
        raise ValueError(f"Task {name!r} is already registered: pass overwrite=True to replace it.")
    _REGISTRY[name] = spec
    return spec


def _register_builtin(spec: TaskSpec) -> None:
    _REGISTRY[spec.name] = dataclasses.replace(spec, builtin=True)


def unregister(name: str) -> None:
    """Remove a user task from the registry; built-in tasks stay."""
    spec = get(name)
    if spec.builtin:
        raise ValueError(f"Task {name!r} is built in and cannot be removed.")
    del _REGISTRY[name]


def get(name: str) -> TaskSpec:
    """Return the task registered under ``name``."""
    if name not in _REGISTRY:
        raise KeyError(f"Task {name!r} is not registered. Registered tasks: {sorted(_REGISTRY)}.")
    return _REGISTRY[name]


def list_tasks() -> list[TaskSpec]:
    """Return every registered task, built-in tasks first."""
    return sorted(_REGISTRY.values(), key=lambda spec: (not spec.builtin, spec.name))


def snapshot(names: Iterable[str] | None = None) -> list[dict]:
    """Return the registered tasks (or the named ones) as JSON-serialisable dicts for a checkpoint."""
    chosen = list_tasks() if names is None else [get(name) for name in names]
    return [spec.to_dict() for spec in chosen]


def restore(records: Iterable[dict]) -> list[TaskSpec]:
    """Register the tasks of a checkpoint that this session does not know yet, and return all of them."""
    specs = []
    for record in records:
        spec = TaskSpec.from_dict(record)
        if spec.name not in _REGISTRY:
            _REGISTRY[spec.name] = spec
        specs.append(spec)
    return specs


@dataclass
class ResolvedInstruction:
    """An instruction matched to a task, with the parameters parsed out of it."""

    instruction: str
    task: TaskSpec
    score: float
    ranking: list[tuple[str, float]]
    genes: list[str] = field(default_factory=list)
    query: str = ""


def resolve(
    instruction: str,
    embed: Callable[[list[str]], np.ndarray],
    *,
    tasks: Iterable[str] | None = None,
    gene_vocabulary: Iterable[str] = (),
    examples: dict[str, Sequence[str]] | None = None,
    min_similarity: float = MIN_SIMILARITY,
) -> ResolvedInstruction:
    """Match an instruction to the registered task whose templates it is most similar to.

    Parameters
    ----------
    instruction
        Free-text request, for example ``"predict expression from H&E"``.
    embed
        Function from a list of sentences to L2-normalised sentence embeddings (rows).
    tasks
        Restrict matching to these task names, for example the tasks a model was trained on.
    gene_vocabulary
        Gene symbols that may be named in the instruction; the ones found are returned in ``genes``.
    examples
        Further instructions per task name, such as those a model was trained on, matched like templates.
    min_similarity
        Cosine similarity below which no task is accepted.

    Raises
    ------
    ValueError
        If the instruction is empty or no task reaches ``min_similarity``; the message lists the closest
        tasks with their scores.
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(
            f"Instruction {instruction!r} is empty: describe the task, e.g. 'predict expression from H&E'."
        )
    candidates = list_tasks() if tasks is None else [get(name) for name in tasks]
    if not candidates:
        raise ValueError("No tasks are available to match the instruction against.")

    query = parse_query(instruction, [template for spec in candidates for template in spec.templates])
    examples = dict(examples or {})
    templates, owners = [], []
    for spec in candidates:
        for template in (*spec.templates, *examples.get(spec.name, ())):
            templates.append(_neutral(template, query))
            owners.append(spec.name)
    vectors = embed([instruction, *templates])
    similarity = vectors[1:] @ vectors[0]

    best: dict[str, float] = {}
    for owner, score in zip(owners, similarity, strict=True):
        best[owner] = max(best.get(owner, -1.0), float(score))
    ranking = sorted(best.items(), key=lambda item: item[1], reverse=True)
    task_name, score = ranking[0]
    if score < min_similarity:
        closest = ", ".join(f"{name} ({value:.2f})" for name, value in ranking[:3])
        raise ValueError(
            f"Instruction {instruction!r} matches no task well (best similarity {score:.2f} < {min_similarity}). "
            f"Closest tasks: {closest}. Rephrase it like one of their templates or register a task with "
            "omnist.tasks.register."
        )

    return ResolvedInstruction(
        instruction=instruction,
        task=get(task_name),
        score=score,
        ranking=ranking,
        genes=parse_genes(instruction, gene_vocabulary),
        query=parse_query(instruction, get(task_name).templates),
    )


def _neutral(template: str, query: str = "") -> str:
    """Fill a template's placeholders for embedding it: ``{query}`` with the parsed query, ``{label}`` neutrally."""
    return template.replace("{label}", "label").replace("{query}", query or "tissue")


def parse_genes(instruction: str, gene_vocabulary: Iterable[str]) -> list[str]:
    """Return the gene symbols of ``gene_vocabulary`` named in the instruction, in order of appearance."""
    vocabulary = {gene.upper(): gene for gene in gene_vocabulary}
    found = []
    for word in re.findall(r"[A-Za-z0-9](?:[A-Za-z0-9\-\.]*[A-Za-z0-9])?", instruction):
        gene = vocabulary.get(word.upper())
        if gene is not None and gene not in found and len(word) > 1 and not word.islower():
            found.append(gene)
    return found


def parse_query(instruction: str, templates: Sequence[str] = ()) -> str:
    """Return the query text of an instruction.

    Quoted text wins; otherwise the part of the instruction that fills ``{query}`` in the first template
    whose fixed words match; otherwise an empty string.
    """
    quoted = re.findall(r"[\"“']([^\"”']+)[\"”']", instruction)
    if quoted:
        return quoted[0].strip()
    text = instruction.strip().rstrip(".?!")
    for template in sorted(templates, key=len, reverse=True):
        if "{query}" not in template:
            continue
        head, tail = template.split("{query}", 1)
        pattern = r"^\s*" + re.escape(head.strip()) + r"\s+(?:the\s+|all\s+)?(.+?)\s*" + re.escape(tail.strip()) + r"$"
        match = re.match(pattern, text, flags=re.IGNORECASE)
        if match:
            return match.group(1).strip()
    return ""
