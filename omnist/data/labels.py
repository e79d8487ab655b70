"""Label names turned into the texts the text decoder scores against."""

from __future__ import annotations

import re

# Expansions of label abbreviations common in spatial transcriptomics annotations. A label that an entry
# matches is scored as "label: expansion", so that plain-language queries and zero-shot names can reach it.
_GLOSSARY: tuple[tuple[str, str], ...] = (
    (r"^WM$", "white matter"),
    (r"^GM$", "grey matter"),
    (r"^L(\d)$", r"cortical layer \1"),
    (r"^Layer ?(\d)$", r"cortical layer \1"),
    (r"^CA(\d)$", r"hippocampal field CA\1"),
    (r"^DG$", "dentate gyrus"),
    (r"^TLS$", "tertiary lymphoid structure"),
    (r"^DCIS$", "ductal carcinoma in situ"),
    (r"^IDC$", "invasive ductal carcinoma"),
)


def describe_label(label: str, descriptions: dict[str, str] | None = None) -> str:
    """Return the text for a label: the user's description, a glossary expansion, or the label itself."""
    label = str(label)
    if descriptions and label in descriptions:
        return f"{label}: {descriptions[label]}"
    for pattern, expansion in _GLOSSARY:
        if re.match(pattern, label, flags=re.IGNORECASE):
            return f"{label}: {re.sub(pattern, expansion, label, flags=re.IGNORECASE)}"
    return label


def label_query(label: str, descriptions: dict[str, str] | None = None) -> str:
    """Return the query text of a label: the user's description or the glossary expansion, else the label.

    Unlike splitting :func:`describe_label` at ": ", this keeps labels that contain ": " themselves whole,
    such as "immune : B/plasma cells, APC".
    """
    label = str(label)
    described = describe_label(label, descriptions)
    return described[len(label) + 2 :] if described != label else label
