"""Warnings attributed to the user's code rather than to omnist's internals."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue ``message`` from the innermost calling frame outside the omnist package.

    The same check can then be reached through ``tl.translate``, ``tl.explain`` or a benchmark and still
    point at the line of the caller's notebook or script.
    """
    level = 2
    frame = sys._getframe(1)
    while frame is not None and Path(frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
