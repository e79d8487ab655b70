"""Benchmark results as grouped bars: one group per task, one bar per method, baselines beside omnist."""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from omnist.pl._utils import finish

logger = logging.getLogger(__name__)

OMNIST_METHOD = "omnist"
BASELINE_COLOURS = ("0.35", "0.55", "0.7", "0.82", "0.45", "0.62")
# omnist first, then its variants (methods named "omnist_..."), drawn in colour without hatching.
VARIANT_COLOURS = ("tab:red", "tab:orange", "tab:pink", "tab:brown")


def benchmark(
    results: Mapping | str | Path,
    *,
    metric: str | None = None,
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | Path | None = None,
) -> Axes | None:
    """Draw benchmark results as bars grouped by task, with each value written on its bar.

    omnist and its variants (methods named ``omnist_...``) are drawn in colour, every other method, a
    baseline, in grey with hatching. Dots mark the value
    of each held-out section when the record has ``"per_section"``.

    Parameters
    ----------
    results
        ``{task: {method: {metric: float, "per_section": {section: float or {metric: float}}}}}`` as the
        benchmark writes it, or the path of its ``results.json``. Top-level entries that are not in this
        layout are skipped with a warning.
    metric
        Metric to draw for every task that reports it. Defaults to each task's first metric, so tasks may
        show different metrics; each task's label names its metric.
    figsize
        Size of the figure in inches when ``ax`` is None.
    ax
        Axes to draw into.
    show
        Show the figure; when False the Axes is returned.
    save
        File to write the figure to.

    Returns
    -------
    The Axes when ``show=False``, else None.

    Raises
    ------
    FileNotFoundError
        If ``results`` is a path that does not exist.
    TypeError
        If ``results`` is neither a mapping nor a path.
    KeyError
        If no task reports ``metric`` (the message lists the metrics present).
    ValueError
        If ``results`` contains no task in the layout above, the file is not JSON, or a ``per_section`` entry
        is not a mapping.
    """
    results = _load(results)
    tasks = _tasks(results)
    chosen = {task: metric or _metrics(records)[0] for task, records in tasks.items() if _metrics(records)}
    if metric is not None:
        chosen = {task: metric for task, records in tasks.items() if metric in _metrics(records)}
        if not chosen:
            present = sorted({name for records in tasks.values() for name in _metrics(records)})
            raise KeyError(f"No task reports metric {metric!r}; metrics present: {present}.")
    if not chosen:
        raise ValueError("The results report no numeric metric.")
    methods = _method_order(tasks[task] for task in chosen)

    if ax is None:
        width = max(6.0, 1.0 * sum(len(tasks[task]) for task in chosen) + 2.0)
        _, ax = plt.subplots(figsize=figsize or (width, 4.5), layout="constrained")
    variants = [method for method in methods if _is_omnist(method)]
    baselines = [method for method in methods if not _is_omnist(method)]
    colours = {method: VARIANT_COLOURS[index % len(VARIANT_COLOURS)] for index, method in enumerate(variants)}
    colours.update({method: BASELINE_COLOURS[index % len(BASELINE_COLOURS)] for index, method in enumerate(baselines)})
    labelled: set[str] = set()
    for group, (task, name) in enumerate(chosen.items()):
        present = [method for method in methods if method in tasks[task]]
        bar_width = 0.8 / len(present)
        for position, method in enumerate(present):
            record = tasks[task][method]
            offset = group + (position - (len(present) - 1) / 2) * bar_width
            value = _value(record, name)
            baseline = not _is_omnist(method)
            label = None
            if method not in labelled:
                label = f"{method} (baseline)" if baseline else method
            ax.bar(
                offset,
                value if value is not None else 0.0,
                width=bar_width,
                color=colours[method],
                hatch="//" if baseline else None,
                edgecolor="white" if baseline else None,
                label=label,
            )
            labelled.add(method)
            sections = _section_values(record, name)
            ax.scatter(np.full(len(sections), offset), sections, s=10, color="black", zorder=3)
            top = max([value or 0.0, *sections])
            text = f"{value:.3f}" if value is not None else "n/a"
            ax.annotate(text, (offset, top), xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)

    ax.set_xticks(np.arange(len(chosen)), [f"{task}\n({name})" for task, name in chosen.items()])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel(metric or "metric (named under each task)")
    ax.set_title(f"Benchmark: {metric}" if metric else "Benchmark: each task's first metric")
    ax.legend(fontsize=8, loc="best")
    return finish(ax.figure, ax, show, save)


def _load(results: Mapping | str | Path) -> Mapping:
    if isinstance(results, Mapping):
        return results
    if not isinstance(results, str | Path):
        raise TypeError(
            f"results is a {type(results).__name__}: pass the {{task: {{method: {{metric: value}}}}}} mapping or the "
            "path of the results.json the benchmark wrote."
        )
    path = Path(results)
    if not path.is_file():
        raise FileNotFoundError(f"Benchmark results {path} not found: pass the results.json the benchmark wrote.")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(
            f"Benchmark results {path} are not valid JSON ({error}): pass the results.json the benchmark wrote."
        ) from error
    if not isinstance(results, Mapping):
        raise ValueError(
            f"Benchmark results {path} hold a {type(results).__name__}, not a mapping of task to methods: pass the "
            "results.json the benchmark wrote."
        )
    return results


def _tasks(results: Mapping) -> dict[str, Mapping]:
    """Return the entries in the ``{task: {method: record}}`` layout, warning about the others."""
    tasks = {}
    for task, records in results.items():
        if isinstance(records, Mapping) and records and all(isinstance(r, Mapping) for r in records.values()):
            tasks[str(task)] = {str(method): record for method, record in records.items()}
        else:
            logger.warning("skipping results[%r]: it is not a mapping of method to metrics", task)
    if not tasks:
        raise ValueError(
            "results is invalid: it contains no task in the layout {task: {method: {metric: value}}}. Pass the "
            "results.json that the benchmark wrote."
        )
    return tasks


def _is_omnist(method: str) -> bool:
    return method == OMNIST_METHOD or method.startswith(f"{OMNIST_METHOD}_")


def _is_metric(value) -> bool:
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_))


def _metrics(records: Mapping) -> list[str]:
    names: dict[str, None] = {}
    for record in records.values():
        for name, value in record.items():
            if name != "per_section" and _is_metric(value):
                names.setdefault(name)
    return list(names)


def _method_order(task_records) -> list[str]:
    """Return omnist first, then the other methods in the order they first appear."""
    methods: dict[str, None] = {}
    for records in task_records:
        for method in records:
            methods.setdefault(str(method))
    ordered = [OMNIST_METHOD] if OMNIST_METHOD in methods else []
    return ordered + [method for method in methods if method != OMNIST_METHOD]


def _value(record: Mapping, metric: str) -> float | None:
    value = record.get(metric)
    if value is None or not _is_metric(value) or not math.isfinite(value):
        return None
    return float(value)


def _section_values(record: Mapping, metric: str) -> list[float]:
    values = []
    per_section = record.get("per_section")
    per_section = {} if per_section is None else per_section
    if not isinstance(per_section, Mapping):
        raise ValueError(
            f"per_section is a {type(per_section).__name__}: pass a mapping of section name to a value or to "
            "{metric: value}."
        )
    for value in per_section.values():
        if isinstance(value, Mapping):
            value = value.get(metric)
        if _is_metric(value) and value is not None and math.isfinite(value):
            values.append(float(value))
    return values
