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
from omnist.model import _distributed as distributed
from omnist.model._batches import TaskData, spot_tensors
from omnist.model._config import OmniSTConfig
from omnist.model._device import autocast, resolve_device
from omnist.model._inputs import SpotInputs
from omnist.nn import Backbone, BackboneShape, TextEncoder
from omnist.tasks import ResolvedInstruction, TaskSpec

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
GENES_FILE = "genes.json"
TASKS_FILE = "tasks.json"

# Softmax temperature of the cosine similarities between paired embeddings (expression ↔ H&E patch).
PAIRED_TEMPERATURE = 0.1

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
        if device == "auto" and distributed.local_device() is not None:
            device = distributed.local_device()
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
        # Label sets learned through the text decoder: target key → {"task", "values", "texts"}.
        self.label_sets: dict[str, dict] = {}
        # Instructions seen in training per task name; instruction resolution matches against them too.
        self.instructions: dict[str, list[str]] = {}

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
        """Match an instruction to a registered task and check the model was trained on it.

        Raises
        ------
        ValueError
            If no task matches, or the best match is a task this model was not trained on.
        """
        resolved = task_registry.resolve(
            instruction,
            self.text.embed,
            tasks=list(
                dict.fromkeys(
                    [*(task.name for task in task_registry.list_tasks()), *(task.name for task in self.tasks)]
                )
            ),
            gene_vocabulary=self.vocabulary.symbols,
            examples=self.instructions,
        )
        trained = [task.name for task in self.tasks]
        if resolved.task.name not in trained:
            raise ValueError(
                f"Instruction {instruction!r} asks for task {resolved.task.name!r} (similarity {resolved.score:.2f}), "
                f"which this model was not trained on. Trained tasks: {trained}. Train with instructions for it "
                "(omnist.pp.build_instructions) or rephrase."
            )
        return resolved

    def _instruction_tokens(self, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, padding = self.text.tokens([instruction])
        return tokens.to(self.device), padding.to(self.device)

    def fit(
        self,
        data: Sequence[TaskData],
        *,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        seed: int = 0,
        progress: bool = True,
    ) -> OmniST:
        """Train the backbone on every task in ``data``, one task and one instruction per batch.

        An epoch visits every training spot of every task once. Learning rate: linear warm-up over the first
        5 % of steps, then cosine decay.

        Under ``torchrun`` (``WORLD_SIZE`` > 1) each process trains on its share of every epoch's batches and
        gradients are averaged over processes (gloo on the CPU, NCCL on CUDA); all ranks end with the same
        weights.
        """
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs={epochs} and batch_size={batch_size} must both be at least 1.")
        rank, world = distributed.setup()
        if world > 1:
            distributed.broadcast_parameters(self.backbone)
        # One generator orders batches identically on every rank; the other draws augmentation and masking.
        generator = np.random.default_rng(seed)
        local = np.random.default_rng([seed, rank])
        torch.manual_seed(seed)
        candidates = []
        for item in data:
            self.text.tokens(item.instructions)
            candidates.append(self.text.sentences(item.candidates).to(self.device) if item.candidates else None)

        steps_per_epoch = math.ceil(sum(math.ceil(len(item) / batch_size) for item in data) / world)
        total_steps = epochs * steps_per_epoch
        optimiser = torch.optim.AdamW(self.backbone.parameters(), lr=lr, weight_decay=weight_decay, foreach=True)
        warmup = max(1, total_steps // 20)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
        start = time.perf_counter()
        self.backbone.train()
        bar = tqdm(range(epochs), desc="training", disable=not progress or rank > 0)
        for epoch in bar:
            batches = [
                (task_index, order[i : i + batch_size])
                for task_index, item in enumerate(data)
                for order in [generator.permutation(len(item))]
                for i in range(0, len(item), batch_size)
            ]
            generator.shuffle(batches)
            if world > 1:
                # Every rank takes the same number of steps; the last ones repeat early batches if needed.
                batches = [batches[i % len(batches)] for i in range(rank, steps_per_epoch * world, world)]
            losses: dict[str, list[float]] = {}
            for task_index, positions in batches:
                item = data[task_index]
                instruction = item.instructions[local.integers(len(item.instructions))]
                tokens, padding = self._instruction_tokens(instruction)
                inputs, target = item.batch(positions, self.device, local)
                with autocast(self.device):
                    state = self.backbone.encode(tokens, padding, inputs, item.task.output)
                    if item.kind == "paired_image":
                        # The paired patches go through the same trunk and decoder under the same instruction.
                        target = self.backbone.encode(tokens, padding, target, item.task.output)
                    loss = self._loss(item, state, target, candidates[task_index])
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if world > 1:
                    distributed.average_gradients(self.backbone, world)
                torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), 1.0)
                optimiser.step()
                scheduler.step()
                losses.setdefault(item.task.name, []).append(loss.item())
            record = {"epoch": epoch + 1, **{name: float(np.mean(values)) for name, values in losses.items()}}
            self.history.append(record)
            bar.set_postfix(loss=f"{np.mean([value for key, value in record.items() if key != 'epoch']):.3f}")
        self.backbone.eval()
        logger.info("finished training %d epochs (%.1f s)", epochs, time.perf_counter() - start)
        return self

    def _loss(
        self, item: TaskData, state: torch.Tensor, target: torch.Tensor, candidates: torch.Tensor | None
    ) -> torch.Tensor:
        if item.kind in ("expression", "masked"):
            if item.kind == "masked":
                state = self.backbone.decode_embedding(state)
            prediction = self.backbone.decode_expression(state).float()
            measured = torch.isfinite(target)
            if not measured.any():
                return prediction.sum() * 0.0
            return ((prediction - torch.nan_to_num(target)) ** 2)[measured].mean()
        if item.kind == "paired_image":
            return _paired_loss(self.backbone.decode_embedding(state), self.backbone.decode_embedding(target))
        logits = self.backbone.decode_text(state, candidates).float()
        if item.kind == "labels":
            if (target < 0).all():
                return logits.sum() * 0.0
            weight = None
            if item.class_weights is not None:
                weight = torch.as_tensor(item.class_weights, dtype=logits.dtype, device=logits.device)
            return torch.nn.functional.cross_entropy(logits, target.long(), weight=weight, ignore_index=-1)
        if item.kind == "proportions":
            return -(target.float() * torch.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
        raise ValueError(f"Task {item.task.name!r} has target kind {item.kind!r}, which fit cannot train.")

    @torch.no_grad()
    def encode_spots(
        self,
        inputs: SpotInputs,
        instruction: str,
        modalities: Sequence[str],
        output: str,
        *,
        batch_size: int = 256,
        test_time_augmentation: bool = True,
        progress: bool = True,
    ) -> torch.Tensor:
        """Return the output-query states ``(spots, d_model)`` of every spot, on the CPU.

        With ``test_time_augmentation`` and an image input, the states average the four rotations of each
        patch.
        """
        modalities = tuple(modalities)
        tokens, padding = self._instruction_tokens(instruction)
        turns = (0, 1, 2, 3) if test_time_augmentation and "image" in modalities else (None,)
        self.backbone.eval()
        out = torch.empty(len(inputs), self.config.d_model)
        for start in tqdm(range(0, len(inputs), batch_size), desc="predicting", disable=not progress, leave=False):
            indices = np.arange(start, min(start + batch_size, len(inputs)))
            total = 0.0
            for turn in turns:
                tensors = spot_tensors(inputs, modalities, indices, self.device, dihedral=turn)
                with autocast(self.device):
                    total = total + self.backbone.encode(tokens, padding, tensors, output).float()
            out[indices] = (total / len(turns)).cpu()
        return out

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], instruction: str, output: str) -> torch.Tensor:
        """Return the output-query states ``(len(texts), d_model)`` of text inputs, on the CPU."""
        tokens, padding = self._instruction_tokens(instruction)
        text_tokens, text_padding = self.text.tokens(list(texts))
        inputs = {"text": {"tokens": text_tokens.to(self.device), "padding": text_padding.to(self.device)}}
        self.backbone.eval()
        with autocast(self.device):
            return self.backbone.encode(tokens, padding, inputs, output).float().cpu()

    @torch.no_grad()
    def predict_expression(
        self,
        inputs: SpotInputs,
        instruction: str,
        genes: Sequence[str] | None = None,
        *,
        modalities: Sequence[str] = ("image",),
        batch_size: int = 256,
        progress: bool = True,
    ) -> np.ndarray:
        """Return predicted log1p(CP10k) ``(spots, genes)``."""
        states = self.encode_spots(
            inputs, instruction, modalities, "expression", batch_size=batch_size, progress=progress
        )
        return self.expression_from_states(states, genes, batch_size=batch_size)

    @torch.no_grad()
    def expression_from_states(
        self,
        states: torch.Tensor,
        genes: Sequence[str] | None = None,
        *,
        batch_size: int = 256,
        standardised: bool = False,
    ) -> np.ndarray:
        """Return log1p(CP10k) ``(spots, genes)`` decoded from expression-query states.

        With ``standardised`` the values stay standardised by the vocabulary's per-gene mean and standard
        deviation over the training spots.
        """
        genes = self.genes if genes is None else list(genes)
        positions = self.vocabulary.index(genes)
        gene_index = torch.from_numpy(positions).to(self.device)
        values = []
        for start in range(0, len(states), batch_size):
            chunk = states[start : start + batch_size].to(self.device)
            values.append(self.backbone.decode_expression(chunk, gene_index).float().cpu())
        values = torch.cat(values).numpy()
        return values if standardised else self.vocabulary.unstandardise(values, positions)

    @torch.no_grad()
    def text_embeddings(self, states: torch.Tensor) -> torch.Tensor:
        """Return L2-normalised text-space embeddings ``(spots, text width)`` of output states."""
        return torch.cat(
            [
                self.backbone.text_decoder.embed(states[i : i + 1024].to(self.device)).float().cpu()
                for i in range(0, len(states), 1024)
            ]
        )

    @torch.no_grad()
    def score_texts(self, embeddings: torch.Tensor, texts: Sequence[str]) -> np.ndarray:
        """Return cosine similarities ``(spots, texts)`` between text-space embeddings and candidate texts."""
        candidates = self.text.sentences(list(texts))
        return (embeddings @ candidates.T).numpy()

    def text_probabilities(self, embeddings: torch.Tensor, texts: Sequence[str]) -> np.ndarray:
        """Return the text decoder's softmax ``(spots, texts)`` over candidate texts, as float64."""
        logits = self.score_texts(embeddings, texts).astype(np.float64) * self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    @property
    def temperature(self) -> float:
        """Scale applied to cosine similarities before the softmax over candidate texts."""
        return float(self.backbone.text_decoder.log_temperature.detach().exp())

    @torch.no_grad()
    def spot_embeddings(self, states: torch.Tensor) -> np.ndarray:
        """Return embedding-decoder outputs ``(spots, d_model)`` of output states."""
        return torch.cat(
            [
                self.backbone.decode_embedding(states[i : i + 1024].to(self.device)).float().cpu()
                for i in range(0, len(states), 1024)
            ]
        ).numpy()

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors``, ``genes.json`` and ``tasks.json`` to ``directory``.

        No pickle is involved, so loading a checkpoint never runs code from it.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2))
        (directory / GENES_FILE).write_text(json.dumps(self.vocabulary.to_dict()))
        (directory / TASKS_FILE).write_text(
            json.dumps(
                {
                    "tasks": [task.to_dict() for task in self.tasks],
                    "label_sets": self.label_sets,
                    "instructions": self.instructions,
                    "history": self.history,
                },
                indent=2,
            )
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
        model.label_sets = dict(task_file.get("label_sets", {}))
        model.instructions = {name: list(items) for name, items in task_file.get("instructions", {}).items()}
        return model


def _paired_loss(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Return the symmetric InfoNCE loss of row-paired embeddings; the other rows of the batch are negatives."""
    first = torch.nn.functional.normalize(first.float(), dim=-1)
    second = torch.nn.functional.normalize(second.float(), dim=-1)
    logits = first @ second.T / PAIRED_TEMPERATURE
    labels = torch.arange(len(logits), device=logits.device)
    return 0.5 * (
        torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)
    )


def expression_frame(values: np.ndarray, obs_names: pd.Index, genes: Sequence[str]) -> pd.DataFrame:
    """Return predictions as a DataFrame indexed by spot with one column per gene symbol."""
    return pd.DataFrame(values, index=pd.Index(obs_names, dtype=str), columns=pd.Index(list(genes), dtype=str))
