"""Training and inference batches: adapter tensors for a set of spots, and the targets of each task kind."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from omnist.model._inputs import ImageInputs, SpotInputs
from omnist.tasks import TaskSpec

# Fraction of a spot's measured genes hidden from the expression adapter when the embedding is trained.
MASK_FRACTION = 0.3


def image_tensors(
    inputs: ImageInputs,
    indices: np.ndarray,
    device: torch.device,
    *,
    generator: np.random.Generator | None = None,
    dihedral: int | None = None,
) -> dict[str, torch.Tensor]:
    """Return normalised patches ``(B, 3, H, W)`` and features for ``indices``.

    With a ``generator`` each patch gets a random flip/rotation and a small colour jitter (training). With
    ``dihedral`` (0-7) all patches get that flip/rotation (test-time augmentation).
    """
    patches = torch.from_numpy(inputs.patches[indices]).to(device).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.from_numpy(inputs.colour_mean[indices]).to(device)[:, :, None, None]
    std = torch.from_numpy(inputs.colour_std[indices]).to(device)[:, :, None, None]
    patches = (patches - mean) / std

    if generator is not None:
        turns = generator.integers(0, 8, size=len(indices))
        patches = torch.stack([_dihedral(patch, int(turn)) for patch, turn in zip(patches, turns, strict=True)])
        shift = torch.from_numpy(generator.normal(0.0, 0.1, size=(len(indices), 3, 1, 1))).float().to(device)
        gain = torch.from_numpy(generator.normal(1.0, 0.05, size=(len(indices), 3, 1, 1))).float().to(device)
        patches = patches * gain + shift
    elif dihedral is not None:
        patches = _dihedral(patches, dihedral)

    return {"patches": patches, "features": torch.from_numpy(inputs.features[indices]).to(device)}


def _dihedral(patches: torch.Tensor, turn: int) -> torch.Tensor:
    rotated = torch.rot90(patches, turn % 4, dims=(-2, -1))
    return torch.flip(rotated, dims=(-1,)) if turn >= 4 else rotated


def spot_tensors(
    inputs: SpotInputs,
    modalities: tuple[str, ...],
    indices: np.ndarray,
    device: torch.device,
    *,
    generator: np.random.Generator | None = None,
    dihedral: int | None = None,
    expression: np.ndarray | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """Return the adapter inputs of ``modalities`` for the spots at ``indices``.

    ``expression`` replaces the spots' own expression values (used to hide masked genes).
    """
    out: dict[str, dict[str, torch.Tensor]] = {}
    for modality in modalities:
        if not inputs.has(modality):
            raise KeyError(f"The spots have no {modality} input.")
        if modality == "image":
            out["image"] = image_tensors(inputs.images, indices, device, generator=generator, dihedral=dihedral)
        elif modality == "expression":
            values = inputs.expression[indices] if expression is None else expression
            out["expression"] = {"values": torch.from_numpy(values).to(device)}
        elif modality == "graph":
            table = inputs.neighbours[indices]
            values = inputs.expression[np.maximum(table, 0)]
            values[table < 0] = np.nan
            out["graph"] = {
                "values": torch.from_numpy(values).to(device),
                "offsets": torch.from_numpy(inputs.offsets[indices]).to(device),
                "padding": torch.from_numpy(table < 0).to(device),
            }
    return out


@dataclass
class TaskData:
    """The training spots of one task with one kind of target.

    ``kind`` is ``"expression"`` (standardised values over the vocabulary, NaN = unmeasured), ``"labels"``
    (an index into ``candidates``, -1 = unlabelled), ``"proportions"`` (a distribution over
    ``candidates``), ``"masked"`` (the spot's own expression, partly hidden from the input) or
    ``"paired_image"`` (the spot's own H&E patch; the other spots of the batch are the negatives).
    ``class_weights`` weight the cross-entropy of ``"labels"`` per candidate. ``texts`` holds the text input
    of tasks that read one: token embeddings and padding of each distinct text, and the text of each row.
    """

    task: TaskSpec
    instructions: list[str]
    inputs: SpotInputs
    kind: str
    targets: np.ndarray
    rows: np.ndarray
    candidates: list[str] = field(default_factory=list)
    target_key: str = ""
    class_weights: np.ndarray | None = None
    texts: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, positions: np.ndarray, device: torch.device, generator: np.random.Generator):
        """Return ``(adapter inputs, target)`` for the training rows at ``positions``."""
        indices = self.rows[positions]
        targets = self.targets[positions]
        override = None
        if self.kind == "masked":
            override = self.inputs.expression[indices].copy()
            hidden = (generator.random(override.shape) < MASK_FRACTION) & np.isfinite(override)
            targets = np.where(hidden, override, np.nan).astype(np.float32)
            override[hidden] = np.nan
        modalities = tuple(modality for modality in self.task.inputs if modality != "text")
        inputs = spot_tensors(self.inputs, modalities, indices, device, generator=generator, expression=override)
        if "text" in self.task.inputs:
            if self.texts is None:
                raise ValueError(f"Task {self.task.name!r} reads text, but its training spots have no text input.")
            tokens, padding, row_text = self.texts
            chosen = torch.from_numpy(row_text[positions])
            inputs["text"] = {"tokens": tokens[chosen].to(device), "padding": padding[chosen].to(device)}
        if self.kind == "paired_image":
            return inputs, spot_tensors(self.inputs, ("image",), indices, device, generator=generator)
        return inputs, torch.from_numpy(np.asarray(targets)).to(device)
