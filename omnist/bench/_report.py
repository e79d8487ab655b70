"""Result records of the benchmark tasks: per-section metrics, their means, tables and results.json."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

RESULTS_FILE = "results.json"


def summarise(per_section: Mapping[str, Mapping[str, float | None]]) -> dict:
    """Build one method's record: each metric averaged over sections, plus ``"per_section"``.

    A metric that is ``None`` (undefined) in a section is left out of that metric's mean. A metric undefined
    in every section is ``None``.
    """
    metrics = list(dict.fromkeys(metric for scores in per_section.values() for metric in scores))
    record: dict = {}
    for metric in metrics:
        values = [scores.get(metric) for scores in per_section.values()]
        defined = [value for value in values if value is not None and math.isfinite(value)]
        record[metric] = float(np.mean(defined)) if defined else None
    record["per_section"] = {section: dict(scores) for section, scores in per_section.items()}
    return record


def metric_names(results: Mapping[str, Mapping]) -> list[str]:
    """Return the metrics of a task's results: the keys with a number (or ``None``) in the first method's record."""
    record = next(iter(results.values()))
    return [key for key, value in record.items() if key != "per_section" and (value is None or _is_number(value))]


def format_table(task: str, results: Mapping[str, Mapping], metric: str | Sequence[str] | None = None) -> str:
    """Return a plain-text table of one task's results with one column per held-out section.

    With one metric the table has one row per method. With several metrics (all of them by default) it has
    one row per method and metric, and a ``metric`` column. A section value may be a number or a dict of
    metrics (``{"per_section": {"B1": {"ari": 0.4}}}``); a missing or undefined value shows as ``-``.
    """
    if metric is None:
        metrics = metric_names(results)
    elif isinstance(metric, str):
        metrics = [metric]
    else:
        metrics = list(metric)
    sections = list(dict.fromkeys(name for record in results.values() for name in record["per_section"]))
    name_width = max(22, len(task) + 2, *(len(method) + 2 for method in results))
    multi = len(metrics) > 1
    metric_width = max(len(name) for name in metrics) + 2 if multi else 0

    header = f"{task:<{name_width}}"
    header += f"{'metric':<{metric_width}}" if multi else ""
    header += f"{'mean':>8}" + "".join(f"{name:>8}" for name in sections)
    lines = [header, "-" * len(header)]
    for method, record in results.items():
        for name in metrics:
            row = f"{method:<{name_width}}"
            row += f"{name:<{metric_width}}" if multi else ""
            row += _cell(record.get(name))
            row += "".join(_cell(_section_value(record["per_section"].get(section), name)) for section in sections)
            lines.append(row)
    return "\n".join(lines)


def write_results(results: Mapping[str, Mapping], out: str | Path) -> Path:
    """Write ``results`` (one key per task) to ``out/results.json`` and return the path.

    Undefined values are written as ``null`` because JSON has no NaN.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_FILE
    path.write_text(json.dumps(_without_nan(results), indent=2))
    return path


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _section_value(value, metric: str):
    if isinstance(value, Mapping):
        return value.get(metric)
    return value


def _cell(value) -> str:
    if value is None or not _is_number(value) or not math.isfinite(value):
        return f"{'-':>8}"
    return f"{value:>8.3f}"


def _without_nan(value):
    if isinstance(value, Mapping):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nan(item) for item in value]
    if _is_number(value):
        return float(value) if math.isfinite(value) else None
    return value
