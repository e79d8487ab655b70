"""Device choice and mixed precision."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return CUDA, then MPS, then CPU for ``"auto"``; otherwise the named device after checking it exists."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available: use device='auto' or 'cpu'.")
    return resolved


def autocast(device: torch.device):
    """Return a bf16 autocast context on CUDA and a no-op context elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
