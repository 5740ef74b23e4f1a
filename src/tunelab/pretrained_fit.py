"""How well the pretrained features already fit the data, and the stage learning rates that follow.

Before training, a linear probe (balanced logistic regression, :mod:`tunelab.engine.probe`) on the
frozen backbone's pooled features is cross-validated on the training split. Its accuracy,
corrected for what always answering the majority class scores (Cohen's kappa against that
guess), says how much the features need to change: at ``FIT_KAPPA`` or more they already separate
the classes, and a stage with ``lr_if_features_fit`` trains at that learning rate instead of its
``lr``, adjusting the features rather than relearning them. The default image recipe's all-layers
stage has it (3e-4, or 1e-4 when the features fit).

Why 0.9, measured on the suite (benchmarks/results/suite_features_fit.md): the probe's kappa was 0.95-1.0
on every seed of the two tasks where the lower rate gained (photo-crops, textures-grey) and 0.85 or
less on every seed of the seven where it lost (lfw-face-vs-nonface 0.75-0.85, glyphs 0.78-0.83,
digits 0.70-0.78, the rest lower).

The same probe decides what a modality asks it to (``Task.probe_choice``: images, ``augment: auto``,
:mod:`tunelab.vision.auto_augment`).

The decisions are written into the run's config.yaml (``lr`` set, ``lr_if_features_fit`` removed,
``augment`` a preset), so that a resumed run and the refit train as the first fit chose.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from tunelab.config import Config
from tunelab.engine.model import FineTuneModel
from tunelab.engine.probe import cv_accuracy, fit_standardised, pooled_features, stratified_sample
from tunelab.engine.task import ProbeChoice
from tunelab.objectives import objective_of

log = logging.getLogger("tunelab")

FIT_KAPPA = 0.9  # chance-corrected cross-validated probe accuracy at which the features "fit"
# examples the probe is fitted on (a stratified sample above that): its cross-validation took 23 s on
# 1,000 Fashion-MNIST images and 9 s on 500 (2 CPU cores); every suite task the rules were chosen
# on has fewer training examples, so the cap changes none of its decisions
PROBE_MAX = 500


def wanted(cfg: Config) -> bool:
    """Whether the config waits on the probe: a stage's learning rate, or ``augment: auto``."""
    return cfg.regularization.augment == "auto" or any(st.lr_if_features_fit is not None for st in cfg.stages)


def _unprobed(cfg: Config) -> str | None:
    """Why the run's pretrained features cannot be probed (random weights tell nothing; the
    objective says whether its problem has the probe's classes); None where they can."""
    return "random weights" if not cfg.model.pretrained else objective_of(cfg).unprobed()


def probe_wanted(cfg: Config) -> bool:
    """Whether there are pretrained features to ask (else every stage keeps its lr and
    ``augment: auto`` flips)."""
    return wanted(cfg) and _unprobed(cfg) is None


def why_not_probed(cfg: Config) -> str:
    """Why a run has no probe record, in words (for the log and the stages' choices)."""
    return _unprobed(cfg) or "a class with fewer than 2 training examples"


def probe_fit(
    model: FineTuneModel,
    inputs: Any,
    labels: np.ndarray,
    batch_size: int,
    device: torch.device,
    seed: int,
    *,
    choice: ProbeChoice | None = None,
) -> dict[str, Any] | None:
    """The linear probe's cross-validated accuracy on ``inputs`` (at most PROBE_MAX of them, a
    stratified sample), the majority class's share and their kappa, and what the modality's
    ``choice`` measures (images: the mirror check); None when cross-validation is impossible (a
    class with fewer than two examples, or a single class)."""
    y = np.asarray(labels)
    counts = np.bincount(y)
    if (counts > 0).sum() < 2 or counts[counts > 0].min() < 2:
        return None
    sub = stratified_sample(y, PROBE_MAX, seed)
    x = pooled_features(model, inputs[torch.from_numpy(sub)], batch_size, device)
    _, clf = fit_standardised(x, y[sub], seed)
    acc = cv_accuracy(clf)
    if acc is None:
        return None
    majority = float(counts.max() / counts.sum())
    out: dict[str, Any] = {
        "cv_accuracy": acc,
        "majority": majority,
        "kappa": (acc - majority) / (1.0 - majority),
        "examples": len(sub),
        "threshold": FIT_KAPPA,
    }
    if choice is not None:
        c = float(np.atleast_1d(clf.C_)[0])
        out.update(choice.measure(model, inputs[torch.from_numpy(sub)], x, y[sub], c, batch_size, device, seed))
    return out


def features_fit(fit: dict[str, Any] | None) -> bool:
    """Whether a :func:`probe_fit` record says the pretrained features already fit the data."""
    # the tolerance: a kappa of exactly 0.9 (11 of 12 folds' examples right, 6 balanced classes) is
    # computed as 0.8999...
    return fit is not None and fit["kappa"] >= fit.get("threshold", FIT_KAPPA) - 1e-9


def apply_fit(
    cfg: Config, fit: dict[str, Any] | None, train: Any = None, choice: ProbeChoice | None = None
) -> tuple[Config, dict[str, str]]:
    """The config with every ``lr_if_features_fit`` resolved: the stage's ``lr`` becomes it when the
    probe's kappa reaches FIT_KAPPA, and stays otherwise (also when ``fit`` is None); the field is
    dropped either way. What the modality's ``choice`` decides from the probe (images: ``augment:
    auto`` becomes a preset, by the ``train`` set's images) is resolved too. Returns (config,
    {key: what was chosen and why}) for the log."""
    fits = features_fit(fit)
    stages, chosen = [], {}
    for i, st in enumerate(cfg.stages):
        if st.lr_if_features_fit is None:
            stages.append(st)
            continue
        update: dict[str, Any] = {"lr_if_features_fit": None}
        if fits:
            update.update(lr=st.lr_if_features_fit, lr_scale=None)
        stages.append(st.model_copy(update=update))
        rate = (
            f"lr {st.lr_if_features_fit:g}" if fits else (f"lr {st.lr:g}" if st.lr is not None else f"lr_scale {st.lr_scale:g}")
        )
        why = (
            f"no probe: {why_not_probed(cfg)}"
            if fit is None
            else f"probe kappa {fit['kappa']:.2f} {'>=' if fits else '<'} {FIT_KAPPA}"
        )
        chosen[f"stages.{i}"] = f"{rate} ({why})"
    cfg = cfg.model_copy(update={"stages": stages})
    if choice is not None:
        cfg, more = choice.resolve(cfg, fit, train)
        chosen.update(more)
    return cfg, chosen
