"""Stratified, seeded splits of one labelled source, and per-class sub-sampling: the same rules for
every modality's data (:mod:`tunelab.vision.data`, :mod:`tunelab.text.data`).

    train_idx, val_idx, test_idx, rng = split_indices(labels, classes, "train.csv", cfg, separate_test=False)
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import train_test_split

from tunelab.config import DataConfig
from tunelab.errors import DataError
from tunelab.objectives import data_objective

log = logging.getLogger("tunelab")


def per_class(
    indices: np.ndarray,
    labels: np.ndarray,
    n: int | None,
    rng: np.random.Generator,
    *,
    key: str | None = None,
    classes: list[str] | None = None,
) -> np.ndarray:
    """At most ``n`` randomly chosen indices of each class (all when ``n`` is None), sorted. With
    ``key`` (the config key that asked for ``n``), classes that have fewer are named in a warning."""
    if n is None:
        return np.sort(indices)
    keep, short = [], []
    for c in np.unique(labels[indices]):
        idx = indices[labels[indices] == c]
        keep.append(rng.permutation(idx)[:n])
        if len(idx) < n:
            short.append(f"{classes[c] if classes else c} ({len(idx)})")
    if key and short:
        log.warning("data.%s: %d, but %d class(es) have fewer, and use all they have: %s", key, n, len(short), ", ".join(short))
    return np.sort(np.concatenate(keep)) if keep else indices[:0]


def _stratified(
    indices: np.ndarray, labels: np.ndarray, frac: float, seed: int, what: str, source: str, classes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, held_out) with ``frac`` of every class held out."""
    if frac <= 0:
        return indices, indices[:0]
    counts = np.bincount(labels[indices], minlength=len(classes))
    too_few = [f"{classes[c]} ({counts[c]})" for c in range(len(classes)) if 0 < counts[c] < 2]
    if too_few:
        raise DataError(
            f"{source}: cannot hold out a stratified {what} split; classes with fewer than 2 images: "
            f"{', '.join(too_few)}. Add images or set data.{what}_split: 0"
        )
    try:
        rest, held = train_test_split(indices, test_size=frac, stratify=labels[indices], random_state=seed)
    except ValueError as e:
        raise DataError(f"{source}: cannot make a stratified {what} split of {frac}: {e}") from None
    return np.sort(rest), np.sort(held)


def split_indices(
    labels: np.ndarray, classes: list[str], name: str, cfg: DataConfig, separate_test: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.random.Generator]:
    """Stratified, seeded splits of one labelled source: a test part (unless a separate test set
    is given), a validation part, and the training part sub-sampled per class. Returns the train,
    val and test indices and the generator that later per-class caps continue with. ``labels``
    are the source's targets; what a split keeps in proportion is the objective's strata (the
    classes of a single-label problem)."""
    labels, classes = data_objective(cfg).split_groups(labels, classes)
    rng = np.random.default_rng(cfg.seed)
    pool = np.arange(len(labels))
    test_idx = None
    if not separate_test and cfg.test_split > 0:
        pool, test_idx = _stratified(pool, labels, cfg.test_split, cfg.seed, "test", name, classes)
    pool, val_idx = _stratified(pool, labels, cfg.val_split, cfg.seed + 1, "val", name, classes)
    train_idx = per_class(pool, labels, cfg.samples_per_class, rng, key="samples_per_class", classes=classes)
    val_idx = per_class(val_idx, labels, cfg.val_samples_per_class, rng)
    return train_idx, val_idx, test_idx, rng
