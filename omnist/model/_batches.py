"""Training and inference batches per task: tensors for the adapters and the target for the decoder."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from omnist.model._inputs import ImageInputs
from omnist.tasks import TaskSpec


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


@dataclass
class ExpressionTaskData:
    """Spots of one task whose output is expression: image inputs and standardised targets (NaN = unmeasured)."""

    task: TaskSpec
    instructions: list[str]
    images: ImageInputs
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def inputs(self, indices: np.ndarray, device: torch.device, generator: np.random.Generator | None):
        """Return the adapter inputs for ``indices``."""
        return {"image": image_tensors(self.images, indices, device, generator=generator)}

    def target(self, indices: np.ndarray, device: torch.device) -> torch.Tensor:
        """Return the targets for ``indices``."""
        return torch.from_numpy(self.targets[indices]).to(device)
