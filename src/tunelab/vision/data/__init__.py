"""Labelled image data: sources, stratified splits, few-shot sub-sampling, decode-once tensors.

splits = load_data(ImageDataConfig(train="fashion-mnist", samples_per_class=20))
splits.train.images   # uint8 [N, 3, S, S], decoded once at the working resolution
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunelab.engine.data import Splits
from tunelab.errors import DataError
from tunelab.objectives import Objective, data_objective
from tunelab.splitting import per_class, split_indices
from tunelab.vision.config import ImageDataConfig
from tunelab.vision.data._checks import drop_duplicates, drop_overlap
from tunelab.vision.data._decode import IMAGE_EXTENSIONS, BadImage, decode_file
from tunelab.vision.data._sources import (
    BUILTIN,
    BUILTIN_TEST_SPLIT,
    ArraySource,
    FileSource,
    image_files,
    native_side,
    open_source,
)
from tunelab.vision.data._store import load_decoded

__all__ = ["BUILTIN", "BadImage", "ImageSet", "Splits", "decode_file", "load_data", "load_held_out", "load_unlabeled"]

log = logging.getLogger("tunelab")


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 [N, 3, S, S]
    labels: torch.Tensor  # the targets: int64 [N] classes, float32 [N, K] multi-hot labels or [N] values
    items: list[str]  # file path (or source[index]) of each image, for reports and errors
    native_side: int | None = None  # median shorter side of the source images before resizing

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def inputs(self) -> torch.Tensor:
        """What the model takes (the trainer's name for images and tokens alike)."""
        return self.images

    def concat(self, other: ImageSet) -> ImageSet:
        return ImageSet(
            torch.cat([self.images, other.images]),
            torch.cat([self.labels, other.labels]),
            self.items + other.items,
            self.native_side,
        )


def _remap(src: ArraySource | FileSource, classes: list[str], field_name: str, objective: Objective) -> np.ndarray:
    """Labels of ``src`` expressed against the training classes (labels)."""
    return objective.remap(src.labels, src.classes, classes, f"data.{field_name} ({src.name})")


def _materialise(
    src: ArraySource | FileSource, idx: np.ndarray, labels: np.ndarray, cfg: ImageDataConfig, skipped: list[str]
) -> ImageSet:
    if cfg.decode_cache is not None:
        images, kept, bad = load_decoded(src, idx, cfg.image_size, cfg.on_bad_image, Path(cfg.decode_cache))
    else:
        images, kept, bad = src.load_many(idx, cfg.image_size, cfg.on_bad_image)
    skipped += bad
    return ImageSet(images, torch.from_numpy(labels[kept]), [src.describe(int(i)) for i in kept])


def _separate_test(cfg: ImageDataConfig) -> str | None:
    """The test set's own source, if it has one: ``data.test``, or with 'auto' a built-in data set's
    official test split (unless a test_split is held out of the training data instead)."""
    if cfg.test == "auto":
        return cfg.train if cfg.train in BUILTIN_TEST_SPLIT and cfg.test_split == 0 else None
    return cfg.test


@dataclass
class _Plan:
    """The sources of a run and which of their items go to which split, before anything is decoded."""

    classes: list[str]
    train_src: ArraySource | FileSource
    test_src: ArraySource | FileSource | None  # the test set's own source, if it has one and it is scored
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray | None  # the test part held out of the training source
    rng: np.random.Generator  # what the per-class caps of the test set continue with


def _plan(cfg: ImageDataConfig) -> _Plan:
    """Open the sources named in ``cfg`` and split them: the same splits in every process that reads
    the same config (fit, evaluate, export), as the split seeds are in it."""
    objective = data_objective(cfg)
    train_src = open_source(cfg.train, "train", field="train", objective=objective)
    classes = list(train_src.classes)
    objective.check(train_src.labels, classes, f"data.train ({train_src.name})")
    if isinstance(train_src, FileSource):
        train_src = drop_duplicates(train_src, "train")

    test_spec = _separate_test(cfg)
    # evaluate_test: false holds the test set out all the same (the same train and validation
    # splits) but never opens, decodes or scores it
    test_src = None
    if test_spec is not None and cfg.evaluate_test:  # its rows read against the training classes
        test_src = open_source(test_spec, "test", field="test", objective=objective, names=classes)
    if isinstance(test_src, FileSource) and isinstance(train_src, FileSource):
        test_src = drop_overlap(drop_duplicates(test_src, "test"), train_src)

    train_idx, val_idx, test_idx, rng = split_indices(train_src.labels, classes, train_src.name, cfg, test_spec is not None)
    return _Plan(classes, train_src, test_src, train_idx, val_idx, test_idx, rng)


def _test_set(plan: _Plan, cfg: ImageDataConfig, skipped: list[str]) -> ImageSet | None:
    objective = data_objective(cfg)
    if plan.test_src is not None:
        t_labels = _remap(plan.test_src, plan.classes, "test", objective)
        t_idx = per_class(np.arange(len(t_labels)), objective.strata(t_labels), cfg.test_samples_per_class, plan.rng)
        return _materialise(plan.test_src, t_idx, t_labels, cfg, skipped)
    if plan.test_idx is not None and cfg.evaluate_test:
        labels = plan.train_src.labels
        idx = per_class(plan.test_idx, objective.strata(labels), cfg.test_samples_per_class, plan.rng)
        return _materialise(plan.train_src, idx, labels, cfg, skipped)
    return None


def load_data(cfg: ImageDataConfig) -> Splits[ImageSet]:
    """Open the sources named in ``cfg``, split, sub-sample, and decode what is used."""
    plan = _plan(cfg)
    src, labels = plan.train_src, plan.train_src.labels
    skipped: list[str] = []
    train = _materialise(src, plan.train_idx, labels, cfg, skipped)
    if len(train) == 0:
        raise DataError(f"{src.name}: no usable training images")
    train.native_side = native_side(src, plan.train_idx)
    val = _materialise(src, plan.val_idx, labels, cfg, skipped) if len(plan.val_idx) else None
    test = _test_set(plan, cfg, skipped)
    if skipped:
        log.warning("skipped %d unreadable image(s) (data.on_bad_image: skip)", len(skipped))
    return Splits(plan.classes, train, val, test, skipped)


def load_held_out(cfg: ImageDataConfig, classes: list[str]) -> ImageSet:
    """A run's own test set (its validation set where it holds none out, else its training set),
    capped at ``cfg.test_samples_per_class`` a class, with only those images decoded: the real
    inputs an export is checked on. ``classes`` are the run's."""
    cfg = cfg.model_copy(update={"evaluate_test": True})  # a test set held out but never scored is used all the same
    plan = _plan(cfg)
    if plan.classes != classes:
        raise DataError(
            f"data.train ({plan.train_src.name}) has changed since the run: its classes are now "
            f"{', '.join(plan.classes)}, the run's {', '.join(classes)}; point data.train at the run's data"
        )
    skipped: list[str] = []
    test = _test_set(plan, cfg, skipped)
    if test is not None:
        return test
    idx = plan.val_idx if len(plan.val_idx) else plan.train_idx
    labels = plan.train_src.labels
    strata = data_objective(cfg).strata(labels)
    return _materialise(plan.train_src, per_class(idx, strata, cfg.test_samples_per_class, plan.rng), labels, cfg, skipped)


def load_eval_set(spec: str, classes: list[str], cfg: ImageDataConfig) -> ImageSet:
    """A labelled set (built-in name, folder or manifest) to evaluate a trained model on, with its
    labels mapped onto the model's classes: a built-in set's official test split, or all of a
    built-in set that has none."""
    objective = data_objective(cfg)
    src = open_source(
        spec, "test" if spec not in BUILTIN or spec in BUILTIN_TEST_SPLIT else "train", field="test", objective=objective
    )
    labels = _remap(src, classes, "test", objective)
    idx = per_class(np.arange(len(labels)), objective.strata(labels), cfg.test_samples_per_class, np.random.default_rng(cfg.seed))
    skipped: list[str] = []
    return _materialise(src, idx, labels, cfg, skipped)


def load_unlabeled(folder: str, cfg: ImageDataConfig, field: str = "distill.unlabeled") -> ImageSet:
    """Every image under ``folder`` (flat, or in subfolders whose names are ignored), decoded once
    like the training images, each with label -1 (no class)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"{field}: {folder} is not a folder; give a folder of images (flat or with subfolders)")
    passed: dict[str, list[Path]] = {"macOS metadata file(s) (._*)": [], "symlink(s) pointing nowhere": []}
    paths = image_files(root, passed)
    if not paths:
        raise DataError(f"{field}: {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    src = FileSource(str(root), paths, np.zeros(len(paths), dtype=np.int64), ["unlabeled"])
    skipped: list[str] = []
    images = _materialise(src, np.arange(len(paths)), np.full(len(paths), -1, dtype=np.int64), cfg, skipped)
    if skipped:
        log.warning("%s: skipped %d unreadable image(s)", field, len(skipped))
    return images


def count_classes(cfg: ImageDataConfig) -> list[str]:
    """Class names of the training source, without decoding any image."""
    return list(open_source(cfg.train, "train", field="train", objective=data_objective(cfg)).classes)
