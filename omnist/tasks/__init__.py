"""Task registry: instruction templates mapped to input and output modalities."""

from omnist.tasks import _builtin  # noqa: F401  (registers the built-in tasks)
from omnist.tasks._registry import (
    MIN_SIMILARITY,
    ResolvedInstruction,
    get,
    list_tasks,
    parse_genes,
    parse_query,
    register,
    resolve,
    restore,
    snapshot,
    unregister,
)
from omnist.tasks._spec import MODALITIES, OUTPUTS, TEXT_PLACEHOLDER, TaskSpec

__all__ = [
    "MIN_SIMILARITY",
    "MODALITIES",
    "OUTPUTS",
    "TEXT_PLACEHOLDER",
    "ResolvedInstruction",
    "TaskSpec",
    "get",
    "list_tasks",
    "parse_genes",
    "parse_query",
    "register",
    "resolve",
    "restore",
    "snapshot",
    "unregister",
]
