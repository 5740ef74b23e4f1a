"""Knowledge distillation, the task's part: the teacher (a finished run, checked against the
student's classes and inputs) and the unlabelled images that join the training examples. The
engine's part, the teacher's logits and the loss, is :mod:`tunelab.engine.distill`; the
modality's, a teacher made to read the student's inputs, is ``Task.teacher`` (:mod:`tunelab.vision.distill`,
:mod:`tunelab.text.distill`).

    distill:
      teacher: runs/lite2-teacher      # a finished run on the same classes
      temperature: 2.0
      alpha: 0.5
      unlabeled: photos/unlabeled/     # optional: images without labels, the teacher's targets only
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunelab.api import load_run
from tunelab.config import Config
from tunelab.engine.data import Splits
from tunelab.engine.distill import Distiller
from tunelab.errors import ConfigError
from tunelab.run_folder import RunFolder
from tunelab.tasks import task_for

log = logging.getLogger("tunelab")


def load_teacher(cfg: Config, classes: list[str], num_classes: int, device: torch.device) -> nn.Module:
    """The teacher of ``cfg.distill``: a finished run folder whose classes are the student's (same
    names, same order) and whose inputs the student's batches can feed."""
    assert cfg.distill is not None
    spec = cfg.distill.teacher
    folder = Path(spec).expanduser()
    if not (folder / RunFolder.CONFIG).is_file():
        raise ConfigError(
            f"distill.teacher: {spec} is not a run folder (no config.yaml); valid: the folder of a "
            f"finished `tunelab fit` run trained on the same {num_classes} classes "
            f"({_names(classes)}), e.g. runs/teacher"
        )
    try:
        run = load_run(folder, device=str(device))
    except ConfigError as e:
        raise ConfigError(f"distill.teacher: {e}") from None
    if run.classes != classes:
        raise ConfigError(
            f"distill.teacher: {spec} was trained on the classes {_names(run.classes)}, the student's "
            f"data has {_names(classes)}; a teacher needs the same classes in the same order"
        )
    tcfg, model = run.config, run.model
    if task_for(tcfg) is not task_for(cfg):
        raise ConfigError(
            f"distill.teacher: {spec} is a {task_for(tcfg).name} model; the student's data are {task_for(cfg).name}"
        )
    if model.head.fc.out_features != num_classes:
        raise ConfigError(
            f"distill.teacher: {spec} has {model.head.fc.out_features} outputs, the student {num_classes} (model.num_classes)"
        )
    return task_for(cfg).teacher(model, cfg, tcfg, spec)


def _names(classes: list[str]) -> str:
    return ", ".join(classes[:6]) + (f" ... ({len(classes)} in all)" if len(classes) > 6 else "")


def add_unlabeled(cfg: Config, splits: Splits[Any]) -> Splits[Any]:
    """The splits with ``distill.unlabeled``'s examples (the modality's reader: images) after the
    training examples, label -1. Called once the class counts, the config's data-size choices and the
    baselines are done: unlabelled examples are in none of them."""
    if cfg.distill is None or cfg.distill.unlabeled is None:
        return splits
    task = task_for(cfg)
    if task.unlabeled is None:  # the modality's config check refuses it first
        raise ConfigError(f"distill.unlabeled: {task.name} runs distil on their labelled examples only; set it to null")
    extra = task.unlabeled(cfg.distill.unlabeled, cfg.data)
    log.info(
        "distill.unlabeled: %d %ss from %s join the %d labelled training %ss (the teacher's targets only)",
        len(extra),
        task.noun,
        cfg.distill.unlabeled,
        len(splits.train),
        task.noun,
    )
    return replace(splits, train=splits.train.concat(extra))


def distiller(cfg: Config, teacher: nn.Module) -> Callable[[Any], Distiller]:
    """What the trainer builds its :class:`Distiller` with (its store, device, precision, ranks)."""
    d = cfg.distill
    assert d is not None
    return lambda trainer: Distiller(
        teacher,
        temperature=d.temperature,
        alpha=d.alpha,
        source=d.teacher,
        store=trainer.store,
        device=trainer.device,
        bf16=trainer.bf16,
        dist=trainer.dist,
    )
