"""The user-facing model: training, inference, devices, checkpoints."""

from omnist.model._config import FORMAT_VERSION, OmniSTConfig
from omnist.model._device import resolve_device
from omnist.model._omnist import OmniST

__all__ = ["FORMAT_VERSION", "OmniST", "OmniSTConfig", "resolve_device"]
