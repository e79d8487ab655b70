"""Tools: train a model and translate between modalities, writing results into AnnData slots."""

from omnist.tl._train import train
from omnist.tl._translate import translate

__all__ = ["train", "translate"]
