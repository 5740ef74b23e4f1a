"""The modality registry: every modality's :class:`~tunelab.engine.task.Task` by name, and the one
dispatch from a config to its task (the config chose the modality: :func:`tunelab.config.modality_of`).

    task = task_for(cfg)                       # images, or texts with model.family: transformers
    splits = task.load_data(cfg.data)
    model = task.build_model(cfg, len(splits.classes))

A new modality is a package with a ``config`` module (its :class:`~tunelab.config.Modality`, named by
an entry point of the ``tunelab.modalities`` group) and a ``Task``, added here or by :func:`register`.
"""

from __future__ import annotations

from typing import Any

from tunelab.config import Config, ModelConfig, modality_of, register_modality
from tunelab.engine.model import FineTuneModel
from tunelab.engine.task import Gallery, GraphInputs, PostFit, Task
from tunelab.text.task import TEXTS
from tunelab.vision.task import IMAGES

__all__ = [
    "TASKS",
    "Gallery",
    "GraphInputs",
    "PostFit",
    "Task",
    "build_model",
    "decode_folder",
    "register",
    "task_for",
    "with_decode_folder",
]

TASKS: dict[str, Task[Any]] = {IMAGES.name: IMAGES, TEXTS.name: TEXTS}


def register(task: Task[Any]) -> None:
    """Make a modality runnable: its configuration and its task (a modality of one's own, a test's)."""
    register_modality(task.modality)
    TASKS[task.name] = task


def task_for(cfg: Config | ModelConfig) -> Task[Any]:
    """The task of a config, or of its ``model`` section alone (its family names the modality)."""
    name = cfg.modality.name if isinstance(cfg, Config) else modality_of({"model": cfg.model_dump()}).name
    if name not in TASKS:
        raise KeyError(f"the {name} modality has a configuration but no task: tunelab.tasks.register it")
    return TASKS[name]


def build_model(cfg: Config | ModelConfig, num_classes: int) -> FineTuneModel:
    """The model a config describes (timm backbone or transformers encoder). Given only the
    ``model`` section, an image backbone is checked at its default input size."""
    if isinstance(cfg, Config):
        return task_for(cfg).build_model(cfg, num_classes)
    return task_for(cfg).model(cfg, num_classes, None)


def decode_folder(cfg: Config, task: Task[Any]) -> str | None:
    """The folder of decoded inputs the run shares with others (``data.decode_cache`` of images), if any."""
    return getattr(cfg.data, task.decode_key) if task.decode_key is not None else None


def with_decode_folder(cfg: Config, task: Task[Any], folder: str | None) -> Config:
    """``cfg`` with its shared folder of decoded inputs set to ``folder`` (for a task that has one)."""
    if task.decode_key is None:
        return cfg
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={task.decode_key: folder})})


def random_weights(cfg: Config) -> Config:
    """``cfg`` with ``model.pretrained: false``: the architecture alone (for loading a run's own weights)."""
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"pretrained": False})})
