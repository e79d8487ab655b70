"""Plots on the tissue image."""

from omnist.pl._translation import translation

__all__ = ["translation"]
