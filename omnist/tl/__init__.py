"""Tools: train a model, translate between modalities, embed spots; results go into AnnData slots."""

from omnist.tl._attribution import Attribution, attribution
from omnist.tl._embed import embed
from omnist.tl._explain import explain
from omnist.tl._regions import rank_regions
from omnist.tl._train import train
from omnist.tl._translate import translate

__all__ = ["Attribution", "attribution", "embed", "explain", "rank_regions", "train", "translate"]
