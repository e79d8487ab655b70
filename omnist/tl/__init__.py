"""Tools: train a model, translate between modalities, embed spots; results go into AnnData slots."""

from omnist.tl._embed import embed
from omnist.tl._train import train
from omnist.tl._translate import translate

__all__ = ["embed", "train", "translate"]
