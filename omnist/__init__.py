"""omnist: one instruction-driven, any-to-any multimodal backbone for spatial transcriptomics."""

__version__ = "0.1.0"

from omnist import datasets, pl, pp, tasks, tl  # noqa: E402
from omnist.model import OmniST, OmniSTConfig  # noqa: E402

__all__ = ["OmniST", "OmniSTConfig", "__version__", "datasets", "pl", "pp", "tasks", "tl"]
