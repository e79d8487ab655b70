"""The gene vocabulary: gene symbols addressed by name, with per-gene statistics for standardised targets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class GeneVocabulary:
    """Gene symbols known to a model with the mean and standard deviation of their log1p(CP10k) in training.

    The expression decoder predicts standardised values, ``(log1p CP10k - mean) / std``; :meth:`unstandardise`
    maps them back.
    """

    symbols: list[str]
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float32)
        self.std = np.asarray(self.std, dtype=np.float32)
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("The gene vocabulary contains duplicated symbols.")
        self._position = {symbol: index for index, symbol in enumerate(self.symbols)}
        self._upper = {symbol.upper(): index for index, symbol in enumerate(self.symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, gene: str) -> bool:
        return gene in self._position or gene.upper() in self._upper

    def index(self, genes: Sequence[str]) -> np.ndarray:
        """Return vocabulary positions of ``genes``; raises ``KeyError`` naming genes the vocabulary lacks."""
        positions = [self._position.get(gene, self._upper.get(gene.upper(), -1)) for gene in genes]
        missing = [gene for gene, position in zip(genes, positions, strict=True) if position < 0]
        if missing:
            raise KeyError(
                f"{len(missing)} genes are not in the model's vocabulary, e.g. {missing[:5]}; "
                f"the vocabulary holds {len(self)} genes (model.genes)."
            )
        return np.asarray(positions, dtype=np.int64)

    def lookup(self, names, symbols=None) -> tuple[np.ndarray, np.ndarray]:
        """Return vocabulary positions of the section genes that are in the vocabulary, and those genes' names.

        A gene is matched by its name in ``names`` (``var_names``) or, failing that, by its entry in
        ``symbols`` (e.g. ``var["gene_symbol"]``), case-insensitively.
        """
        positions, present = [], []
        symbols = [None] * len(names) if symbols is None else list(symbols)
        seen = set()
        for name, symbol in zip(names, symbols, strict=True):
            position = self._position.get(name, self._upper.get(str(name).upper(), -1))
            if position < 0 and isinstance(symbol, str):
                position = self._position.get(symbol, self._upper.get(symbol.upper(), -1))
            if position >= 0 and position not in seen:
                seen.add(position)
                positions.append(position)
                present.append(name)
        return np.asarray(positions, dtype=np.int64), np.asarray(present, dtype=object)

    def standardise(self, values: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Return ``(values - mean) / std`` for columns at vocabulary ``positions``."""
        return (values - self.mean[positions]) / self.std[positions]

    def unstandardise(self, values: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Return ``values * std + mean`` for columns at vocabulary ``positions``."""
        return values * self.std[positions] + self.mean[positions]

    @classmethod
    def fit(cls, symbols: Sequence[str], values: np.ndarray) -> GeneVocabulary:
        """Build a vocabulary from log1p(CP10k) ``values`` (spots × genes), NaN where a gene was not measured."""
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0)
        std = np.where(np.isfinite(std) & (std > 1e-3), std, 1.0)
        return cls(list(symbols), np.nan_to_num(mean), std)

    def to_dict(self) -> dict:
        """Return the vocabulary as JSON-serialisable lists."""
        return {"symbols": list(self.symbols), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, record: dict) -> GeneVocabulary:
        """Build a vocabulary from :meth:`to_dict` output."""
        return cls(list(record["symbols"]), np.asarray(record["mean"]), np.asarray(record["std"]))
