"""The description of one task: which modalities go in, which comes out, and how it is phrased."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MODALITIES = ("image", "expression", "graph", "text")
OUTPUTS = ("expression", "text", "embedding")
# Fills ``{query}`` in training instructions of tasks that read the query as their text input, and replaces
# the query in such an instruction at inference, so the instruction never repeats the input.
TEXT_PLACEHOLDER = "the described region"


@dataclass(frozen=True)
class TaskSpec:
    """A task the backbone serves: instruction templates plus input modalities and one output modality.

    Parameters
    ----------
    name
        Identifier such as ``"image_to_expression"``.
    templates
        Instructions that ask for the task. They train the backbone and anchor instruction resolution, so
        several paraphrases make both more robust.
    inputs
        Input modalities, each one of ``"image"``, ``"expression"``, ``"graph"`` and ``"text"``.
    output
        Output modality: ``"expression"`` (a value per gene), ``"text"`` (a score per candidate text) or
        ``"embedding"``.
    target
        What the training target is read from, for example ``"expression"``, ``"obs:layer"`` or ``"image"``
        (the spot's own H&E patch, learned contrastively with the ``"embedding"`` output); empty when the task
        is only served at inference.
    description
        One sentence shown in listings and error messages.
    """

    name: str
    templates: tuple[str, ...]
    inputs: tuple[str, ...]
    output: str
    target: str = ""
    description: str = ""
    builtin: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"Task name {self.name!r} is invalid: use letters, digits and underscores.")
        if not self.templates:
            raise ValueError(f"Task {self.name!r} has no instruction templates: pass at least one.")
        unknown = [modality for modality in self.inputs if modality not in MODALITIES]
        if not self.inputs or unknown:
            raise ValueError(
                f"Task {self.name!r} has invalid inputs {list(self.inputs)}: choose from {list(MODALITIES)}."
            )
        if self.output not in OUTPUTS:
            raise ValueError(f"Task {self.name!r} has invalid output {self.output!r}: choose from {list(OUTPUTS)}.")

    def to_dict(self) -> dict:
        """Return the spec as a JSON-serialisable dict."""
        record = asdict(self)
        record["templates"] = list(self.templates)
        record["inputs"] = list(self.inputs)
        return record

    @classmethod
    def from_dict(cls, record: dict) -> TaskSpec:
        """Build a spec from :meth:`to_dict` output."""
        return cls(
            name=record["name"],
            templates=tuple(record["templates"]),
            inputs=tuple(record["inputs"]),
            output=record["output"],
            target=record.get("target", ""),
            description=record.get("description", ""),
            builtin=bool(record.get("builtin", False)),
        )
