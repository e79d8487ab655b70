"""Plots on the tissue image."""

from omnist.pl._attribution import attribution
from omnist.pl._benchmark import benchmark
from omnist.pl._explain import spatial_explain
from omnist.pl._retrieval import retrieval
from omnist.pl._translation import translation

__all__ = ["attribution", "benchmark", "retrieval", "spatial_explain", "translation"]
