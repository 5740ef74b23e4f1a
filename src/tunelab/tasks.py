"""The one place a run's modality is chosen: a task is the adapter (data, model, the loop's part,
prediction inputs, report extras) that the modality-neutral loop is given.

    task = task_for(cfg)                       # images, or texts with model.family: transformers
    splits = task.load_data(cfg.data)
    model = task.build_model(cfg, len(splits.classes))

A new modality is one more :class:`Task` in ``TASKS`` and a line in :func:`task_for`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from tunelab.config import Config, DataConfig, ModelConfig
from tunelab.engine.data import Splits
from tunelab.engine.loop import TaskLoop
from tunelab.engine.model import FineTuneModel
from tunelab.errors import DataError
from tunelab.text import data as text_data
from tunelab.text.card import card_facts as text_card_facts
from tunelab.text.distill import text_teacher
from tunelab.text.export import TextGraph
from tunelab.text.loop import TextLoop
from tunelab.text.model import build_text_model
from tunelab.text.predict import labelled as text_labelled
from tunelab.text.predict import text_inputs
from tunelab.text.report import write_wrong_texts
from tunelab.vision import data as image_data
from tunelab.vision.card import card_facts as image_card_facts
from tunelab.vision.data.predict import image_inputs
from tunelab.vision.data.predict import labelled as image_labelled
from tunelab.vision.distill import image_teacher
from tunelab.vision.export import ImageGraph
from tunelab.vision.loop import ImageLoop
from tunelab.vision.model import build_image_model

Gallery = tuple[np.ndarray, np.ndarray, np.ndarray]


class GraphInputs(Protocol):
    """How a graph export (ONNX, TorchScript) feeds the run's model: plain tensors in, logits out."""

    def wrap(
        self, model: nn.Module, head: nn.Module
    ) -> nn.Module: ...  # ``head``: the objective's export head  # the model behind plain tensor inputs
    def input_names(self, cfg: Config) -> list[str]: ...
    def as_tensors(self, examples: Any, n: int) -> tuple[torch.Tensor, ...]: ...  # the first n examples' inputs
    def image_size(self, cfg: Config) -> int | None: ...  # the graph's input resolution, when it has one
    def feed(self, cfg: Config, names: list[str]) -> str: ...  # what to feed it, for the model card


@dataclass(frozen=True)
class Task:
    name: str  # what the examples are called in messages: images, texts
    baseline: Literal["pixels", "tfidf"]  # the raw-input baseline (tunelab.baselines): regression on pixels, or TF-IDF
    load_data: Callable[[DataConfig], Splits[Any]]
    load_eval_set: Callable[[str, list[str], DataConfig], Any]
    # real examples of a run's own data the run never trained on, given its data config and classes (export checks)
    held_out: Callable[[DataConfig, list[str]], Any]
    classes: Callable[[DataConfig], list[str]]  # the training source's class names, nothing decoded
    build_model: Callable[[Config, int], FineTuneModel]  # from the whole config: images need data.image_size
    loop: Callable[[Any], TaskLoop]  # given the trainer: batch order, training inputs, the freeze-boundary cache
    prediction_inputs: Callable[[Config, list[str], list[str]], tuple[list[str], list[str | None], Any]]
    # what the report shows of the validation set beside the metrics; an image gallery is returned
    report_extras: Callable[[Path, Any, np.ndarray | None, list[str]], Gallery | None]
    # what the model card says of the modality, from the run's config: pipeline_tag (the Hub's task),
    # input, limitation, predict_args
    card_facts: Callable[[Config], dict[str, str]]
    noun: str  # one example, in the card and in messages: image, text
    library: str  # where the backbone comes from: timm, transformers (also an export format of that name)
    augment_presets: tuple[str, ...]  # the regularization.augment presets tune searches over (none: no augmentation)
    decode_cache: bool  # whether data.decode_cache applies: decoded inputs a study's trials can share
    few_shot: bool  # whether the default recipe turns to the few-shot recipe on a few examples a class (few_shot.py)
    labelled: Callable[[str], bool]  # whether a path or name is labelled data (tunelab extract reads its classes)
    # a teacher run's model made to read the student's inputs (model, student config, teacher config, distill.teacher)
    teacher: Callable[[nn.Module, Config, Config, str], nn.Module]
    graph: GraphInputs  # the exported graph's inputs (tunelab export --format onnx / torchscript)


def _image_gallery(run_dir: Path, val: Any, probs: np.ndarray | None, classes: list[str]) -> Gallery | None:
    return (val.images.numpy(), val.labels.numpy(), probs) if val is not None and probs is not None else None


def _wrong_texts(run_dir: Path, val: Any, probs: np.ndarray | None, classes: list[str]) -> Gallery | None:
    write_wrong_texts(run_dir, val, probs, classes)  # the texts the model is most confidently wrong about
    return None


def _text_held_out(cfg: DataConfig, classes: list[str]) -> Any:
    """A text run's own test set (else its validation, else its training set), split as the run split
    it (tokenizing is cheap beside decoding images, so the whole data is read as by the run)."""
    splits = text_data.load_text_data(cfg.model_copy(update={"evaluate_test": True}))
    if splits.classes != classes:
        raise DataError(
            f"data.train ({cfg.train}) has changed since the run: its classes are now "
            f"{', '.join(splits.classes)}, the run's {', '.join(classes)}; point data.train at the run's data"
        )
    return splits.test or splits.val or splits.train


def _image_model(cfg: Config, num_classes: int) -> FineTuneModel:
    return build_image_model(cfg.model, num_classes, image_size=cfg.data.image_size)


def _text_model(cfg: Config, num_classes: int) -> FineTuneModel:
    return build_text_model(cfg.model, num_classes)


IMAGES = Task(
    "images",
    "pixels",
    image_data.load_data,
    image_data.load_eval_set,
    image_data.load_held_out,
    image_data.count_classes,
    _image_model,
    ImageLoop,
    image_inputs,
    _image_gallery,
    image_card_facts,
    "image",
    "timm",
    ("none", "flip", "light"),
    True,
    False,
    image_labelled,
    image_teacher,
    ImageGraph(),
)
TEXTS = Task(
    "texts",
    "tfidf",
    text_data.load_text_data,
    text_data.load_text_eval_set,
    _text_held_out,
    text_data.text_classes,
    _text_model,
    TextLoop,
    text_inputs,
    _wrong_texts,
    text_card_facts,
    "text",
    "transformers",
    (),
    False,
    True,
    text_labelled,
    text_teacher,
    TextGraph(),
)
TASKS = {"images": IMAGES, "texts": TEXTS}


def task_for(cfg: Config | ModelConfig) -> Task:
    """The task of a config (or of its ``model`` section): texts for a transformers encoder, else images."""
    model = cfg.model if isinstance(cfg, Config) else cfg
    return TEXTS if model.family == "transformers" else IMAGES


def build_model(cfg: Config | ModelConfig, num_classes: int) -> FineTuneModel:
    """The model a config describes (timm backbone or transformers encoder). Given only the
    ``model`` section, an image backbone is checked at its default input size."""
    if isinstance(cfg, Config):
        return task_for(cfg).build_model(cfg, num_classes)
    return (build_text_model if cfg.family == "transformers" else build_image_model)(cfg, num_classes)


def random_weights(cfg: Config) -> Config:
    """``cfg`` with ``model.pretrained: false``: the architecture alone (for loading a run's own weights)."""
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": False})})
