"""OmniST: the user-facing model around the pure torch backbone."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from omnist import tasks as task_registry
from omnist.data.features import feature_names
from omnist.data.vocabulary import GeneVocabulary
from omnist.model._batches import ExpressionTaskData, image_tensors
from omnist.model._config import OmniSTConfig
from omnist.model._device import autocast, resolve_device
from omnist.model._inputs import ImageInputs
from omnist.nn import Backbone, BackboneShape, TextEncoder
from omnist.tasks import ResolvedInstruction, TaskSpec

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
GENES_FILE = "genes.json"
TASKS_FILE = "tasks.json"

_TEXT_ENCODERS: dict[str, TextEncoder] = {}


def text_encoder(name: str) -> TextEncoder:
    """Return the frozen text encoder ``name``, loaded once per process."""
    if name not in _TEXT_ENCODERS:
        _TEXT_ENCODERS[name] = TextEncoder(name)
    return _TEXT_ENCODERS[name]


class OmniST:
    """An instruction-driven any-to-any model for spatial transcriptomics.

    Create one with :func:`omnist.tl.train` or :meth:`OmniST.load`; use it with :func:`omnist.tl.translate`.

    Parameters
    ----------
    config
        Sizes and settings.
    vocabulary
        Genes the expression decoder can address, by symbol.
    tasks
        Tasks the model was trained on.
    device
        ``"auto"`` (CUDA, then MPS, then CPU) or a torch device name.
    """

    def __init__(
        self,
        config: OmniSTConfig,
        vocabulary: GeneVocabulary,
        tasks: Sequence[TaskSpec],
        device: str | torch.device = "auto",
    ) -> None:
        self.config = config
        self.vocabulary = vocabulary
        self.tasks = list(tasks)
        self.device = resolve_device(device)
        self.text = text_encoder(config.text_encoder)
        shape = BackboneShape(
            d_model=config.d_model,
            n_layers=config.n_layers,
            n_heads=config.n_heads,
            dropout=config.dropout,
            patch_px=config.patch_px,
            image_width=config.image_width,
            n_image_features=len(feature_names()) if config.image_features else 0,
            n_genes=len(vocabulary),
            text_width=self.text.width,
            n_query_tokens=config.n_query_tokens,
        )
        self.backbone = Backbone(shape).to(self.device)
        self.history: list[dict] = []

    def __repr__(self) -> str:
        names = ", ".join(task.name for task in self.tasks)
        return (
            f"OmniST(model_id={self.config.model_id!r}, tasks=[{names}], genes={len(self.vocabulary)}, "
            f"d_model={self.config.d_model}, device={self.device.type!r})"
        )

    @property
    def genes(self) -> list[str]:
        """Gene symbols the expression decoder can predict."""
        return list(self.vocabulary.symbols)

    def to(self, device: str | torch.device) -> OmniST:
        """Move the model to ``device`` and return it."""
        self.device = resolve_device(device)
        self.backbone.to(self.device)
        return self

    def resolve(self, instruction: str) -> ResolvedInstruction:
        """Match an instruction to one of the model's tasks (see :func:`omnist.tasks.resolve`)."""
        return task_registry.resolve(
            instruction,
            self.text.embed,
            tasks=[task.name for task in self.tasks],
            gene_vocabulary=self.vocabulary.symbols,
        )

    def _instruction_tokens(self, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, padding = self.text.tokens([instruction])
        return tokens.to(self.device), padding.to(self.device)

    def fit(
        self,
        data: Sequence[ExpressionTaskData],
        *,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        seed: int = 0,
        progress: bool = True,
    ) -> OmniST:
        """Train the backbone on every task in ``data``, one task and one instruction per batch.

        An epoch visits every spot of every task once. Learning rate: linear warm-up over the first 5 % of
        steps, then cosine decay.
        """
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs={epochs} and batch_size={batch_size} must both be at least 1.")
        generator = np.random.default_rng(seed)
        torch.manual_seed(seed)
        for item in data:
            self.text.tokens(item.instructions)

        steps_per_epoch = sum(math.ceil(len(item) / batch_size) for item in data)
        total_steps = epochs * steps_per_epoch
        optimiser = torch.optim.AdamW(self.backbone.parameters(), lr=lr, weight_decay=weight_decay)
        warmup = max(1, total_steps // 20)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
        start = time.perf_counter()
        self.backbone.train()
        bar = tqdm(range(epochs), desc="training", disable=not progress)
        for epoch in bar:
            batches = [
                (task_index, order[i : i + batch_size])
                for task_index, item in enumerate(data)
                for order in [generator.permutation(len(item))]
                for i in range(0, len(item), batch_size)
            ]
            generator.shuffle(batches)
            losses = []
            for task_index, indices in batches:
                item = data[task_index]
                instruction = item.instructions[generator.integers(len(item.instructions))]
                tokens, padding = self._instruction_tokens(instruction)
                with autocast(self.device):
                    state = self.backbone.encode(
                        tokens, padding, item.inputs(indices, self.device, generator), item.task.output
                    )
                    loss = self._loss(item, state, item.target(indices, self.device))
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), 1.0)
                optimiser.step()
                scheduler.step()
                losses.append(loss.item())
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
            self.history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
        self.backbone.eval()
        logger.info("finished training %d epochs (%.1f s)", epochs, time.perf_counter() - start)
        return self

    def _loss(self, item: ExpressionTaskData, state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if item.task.output == "expression":
            prediction = self.backbone.decode_expression(state).float()
            measured = torch.isfinite(target)
            return ((prediction - torch.nan_to_num(target)) ** 2)[measured].mean()
        raise ValueError(f"Task {item.task.name!r} has output {item.task.output!r}, which fit cannot train yet.")

    @torch.no_grad()
    def predict_expression(
        self,
        images: ImageInputs,
        instruction: str,
        genes: Sequence[str] | None = None,
        *,
        batch_size: int = 256,
        test_time_augmentation: bool = True,
        progress: bool = True,
    ) -> np.ndarray:
        """Return predicted log1p(CP10k) ``(spots, genes)`` for image inputs.

        With ``test_time_augmentation`` the prediction averages the four rotations of each patch.
        """
        genes = self.genes if genes is None else list(genes)
        positions = self.vocabulary.index(genes)
        gene_index = torch.from_numpy(positions).to(self.device)
        tokens, padding = self._instruction_tokens(instruction)
        turns = (0, 1, 2, 3) if test_time_augmentation else (0,)
        self.backbone.eval()
        out = np.empty((len(images), len(genes)), dtype=np.float32)
        for start in tqdm(range(0, len(images), batch_size), desc="predicting", disable=not progress, leave=False):
            indices = np.arange(start, min(start + batch_size, len(images)))
            total = 0.0
            for turn in turns:
                inputs = {"image": image_tensors(images, indices, self.device, dihedral=turn)}
                with autocast(self.device):
                    state = self.backbone.encode(tokens, padding, inputs, "expression")
                    total = total + self.backbone.decode_expression(state, gene_index).float()
            out[indices] = (total / len(turns)).cpu().numpy()
        return self.vocabulary.unstandardise(out, positions)

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors``, ``genes.json`` and ``tasks.json`` to ``directory``.

        No pickle is involved, so loading a checkpoint never runs code from it.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2))
        (directory / GENES_FILE).write_text(json.dumps(self.vocabulary.to_dict()))
        (directory / TASKS_FILE).write_text(
            json.dumps({"tasks": [task.to_dict() for task in self.tasks], "history": self.history}, indent=2)
        )
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.backbone.state_dict().items()}
        save_file(state, directory / WEIGHTS_FILE, metadata={"model_id": self.config.model_id})
        logger.info("saved model %s to %s", self.config.model_id, directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "auto") -> OmniST:
        """Load a model written by :meth:`save`; tasks it was trained on are registered if unknown.

        Raises
        ------
        FileNotFoundError
            If a checkpoint file is missing.
        ValueError
            If a file is corrupted or comes from an incompatible omnist version.
        """
        directory = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE, GENES_FILE, TASKS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name} is missing: {directory} is not an omnist checkpoint.")
        try:
            config = OmniSTConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
            vocabulary = GeneVocabulary.from_dict(json.loads((directory / GENES_FILE).read_text()))
            task_file = json.loads((directory / TASKS_FILE).read_text())
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"The checkpoint in {directory} is corrupted: {error}") from error
        specs = task_registry.restore(task_file["tasks"])
        model = cls(config, vocabulary, specs, device=device)
        try:
            state = load_file(directory / WEIGHTS_FILE)
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{directory / WEIGHTS_FILE} is corrupted: {error}") from error
        try:
            model.backbone.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(
                f"The weights in {directory / WEIGHTS_FILE} do not fit the model in config.json: {error}"
            ) from error
        model.backbone.to(model.device).eval()
        model.history = list(task_file.get("history", []))
        return model


def expression_frame(values: np.ndarray, obs_names: pd.Index, genes: Sequence[str]) -> pd.DataFrame:
    """Return predictions as a DataFrame indexed by spot with one column per gene symbol."""
    return pd.DataFrame(values, index=pd.Index(obs_names, dtype=str), columns=pd.Index(list(genes), dtype=str))
