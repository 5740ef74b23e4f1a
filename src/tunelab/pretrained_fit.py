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

The same probe decides ``augment: auto`` (the image default): fitted on the originals, it scores
held-out examples and their mirror images (:func:`mirror_check`). Where mirror images lose their
class's evidence (digits, letters: a mirrored "3" is not a "3" the way a mirrored shoe is a shoe)
flips would teach the model wrong examples, and the run trains without them; otherwise with flips.
On the suite, flips off gained 3.4 points on digits and 1.0 on glyphs and lost 0.3 to 4.8 on five
other image tasks (benchmarks/results/suite_mirror.md); the check turned them off on 4 of 6 digits
seeds and 3 of 3 glyphs seeds and on no seed of the other eight tasks. Where flips stay, random
resized crops join them (the ``light`` preset) for source images of at least ``CROP_MIN_SIDE`` px:
on the suite crops gained on three of the four tasks of 48-64 px (emoji +2.7, old-photo-crops +1.9,
textures +1.3, photo-crops -0.9) and lost on all six of 8-32 px (-0.7 to -4.0;
benchmarks/results/suite_crops.md).

The decisions are written into the run's config.yaml (``lr`` set, ``lr_if_features_fit`` removed,
``augment`` a preset), so that a resumed run and the refit train as the first fit chose.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from tunelab.baselines import stratified_sample
from tunelab.config import Config
from tunelab.engine.model import FineTuneModel
from tunelab.engine.probe import cv_accuracy, fit_standardised, pooled_features
from tunelab.objectives import objective_of

log = logging.getLogger("tunelab")

FIT_KAPPA = 0.9  # chance-corrected cross-validated probe accuracy at which the features "fit"
# examples the probe is fitted on (a stratified sample above that): its cross-validation took 23 s on
# 1,000 Fashion-MNIST images and 9 s on 500 (2 CPU cores); every suite task the rules were chosen
# on has fewer training examples, so the cap changes none of its decisions
PROBE_MAX = 500
# ``augment: auto`` drops flips when mirror images lose at least this much of their class's probability
# under the probe (on average over held-out examples), and significantly (t of the mean at least MIRROR_T)
MIRROR_LOSS = 0.04
MIRROR_T = 2.0
# ``augment: auto`` adds random resized crops (the ``light`` preset) to the flips when the source
# images' shorter side is at least this many pixels (see the module docstring)
CROP_MIN_SIDE = 48


def wanted(cfg: Config) -> bool:
    """Whether the config waits on the probe: a stage's learning rate, or ``augment: auto``."""
    return cfg.regularization.augment == "auto" or any(st.lr_if_features_fit is not None for st in cfg.stages)


def probe_wanted(cfg: Config) -> bool:
    """Whether there are pretrained features to ask (random weights tell nothing: then every
    stage keeps its lr and ``augment: auto`` flips)."""
    return wanted(cfg) and cfg.model.pretrained and objective_of(cfg).exclusive  # the probe is a classifier


def mirror_wanted(cfg: Config) -> bool:
    return cfg.regularization.augment == "auto" and cfg.model.pretrained and objective_of(cfg).exclusive


def mirror_check(x: np.ndarray, mirrored: np.ndarray, y: np.ndarray, c: float, seed: int) -> dict[str, Any]:
    """Whether mirror images keep their labels, as far as the pretrained features tell: a probe
    (balanced logistic regression at ``c``) fitted on the originals of the other folds scores each
    held-out example and its mirror image. ``loss``: the mean probability of the true class the
    mirror images lose; flips change labels when it is at least MIRROR_LOSS with t >= MIRROR_T."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(5, int(np.bincount(y)[np.bincount(y) > 0].min()))
    lost, right = np.zeros(len(y)), np.zeros((2, len(y)), dtype=bool)
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        m = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=300))
        m.fit(x[tr], y[tr])
        col = np.searchsorted(m.classes_, y[te])
        p, pm = m.predict_proba(x[te]), m.predict_proba(mirrored[te])
        lost[te] = p[np.arange(len(te)), col] - pm[np.arange(len(te)), col]
        right[0, te], right[1, te] = p.argmax(1) == col, pm.argmax(1) == col
    sd = float(lost.std(ddof=1)) if len(lost) > 1 else 0.0
    t = float(lost.mean() / (sd / np.sqrt(len(lost)))) if sd > 0 else 0.0
    return {
        "loss": float(lost.mean()),
        "t": t,
        "accuracy": float(right[0].mean()),
        "accuracy_mirrored": float(right[1].mean()),
        "keeps_labels": not (lost.mean() >= MIRROR_LOSS and t >= MIRROR_T),
    }


def probe_fit(
    model: FineTuneModel,
    inputs: Any,
    labels: np.ndarray,
    batch_size: int,
    device: torch.device,
    seed: int,
    *,
    mirror: bool = False,
) -> dict[str, Any] | None:
    """The linear probe's cross-validated accuracy on ``inputs`` (at most PROBE_MAX of them, a
    stratified sample), the majority class's share and their kappa, and with ``mirror`` (image
    batches) :func:`mirror_check`; None when cross-validation is impossible (a class with fewer
    than two examples, or a single class)."""
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
    if mirror:
        flipped = pooled_features(model, inputs[torch.from_numpy(sub)].flip(-1), batch_size, device)
        out["mirror"] = mirror_check(x, flipped, y[sub], float(np.atleast_1d(clf.C_)[0]), seed)
    return out


def features_fit(fit: dict[str, Any] | None) -> bool:
    """Whether a :func:`probe_fit` record says the pretrained features already fit the data."""
    # the tolerance: a kappa of exactly 0.9 (11 of 12 folds' examples right, 6 balanced classes) is
    # computed as 0.8999...
    return fit is not None and fit["kappa"] >= fit.get("threshold", FIT_KAPPA) - 1e-9


def apply_fit(cfg: Config, fit: dict[str, Any] | None, native_side: int | None = None) -> tuple[Config, dict[str, str]]:
    """The config with every ``lr_if_features_fit`` resolved: the stage's ``lr`` becomes it when the
    probe's kappa reaches FIT_KAPPA, and stays otherwise (also when ``fit`` is None); the field is
    dropped either way. ``augment: auto`` becomes a preset (:func:`_resolve_augment`; ``native_side``:
    the training images' shorter side before resizing, None when unknown). Returns (config,
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
            "no probe: random weights, or a class with fewer than 2 training examples"
            if fit is None
            else f"probe kappa {fit['kappa']:.2f} {'>=' if fits else '<'} {FIT_KAPPA}"
        )
        chosen[f"stages.{i}"] = f"{rate} ({why})"
    cfg = cfg.model_copy(update={"stages": stages})
    if cfg.regularization.augment == "auto":
        cfg, chosen["regularization.augment"] = _resolve_augment(cfg, fit, native_side)
    return cfg, chosen


def _resolve_augment(cfg: Config, fit: dict[str, Any] | None, native_side: int | None) -> tuple[Config, str]:
    """``augment: auto`` -> none where mirror images lose their labels' evidence; otherwise light
    (crops and flips) for source images of at least CROP_MIN_SIDE pixels, flip for smaller ones."""
    check = (fit or {}).get("mirror")
    flips = check is None or check["keeps_labels"]
    crops = flips and native_side is not None and native_side >= CROP_MIN_SIDE
    preset = "light" if crops else "flip" if flips else "none"
    reg = cfg.regularization.model_copy(update={"augment": preset})
    why = (
        "no probe"
        if check is None
        else f"mirror images lose {check['loss']:.3f} of their class's probability, t {check['t']:.1f}"
    )
    if flips:
        side = "unknown" if native_side is None else f"{native_side} px"
        why += f"; source images' shorter side {side}, crops from {CROP_MIN_SIDE} px"
    verdict = {
        "light": "light: random resized crops and flips",
        "flip": "flip",
        "none": "none: flips change what the classes look like",
    }[preset]
    return cfg.model_copy(update={"regularization": reg}), f"{verdict} ({why})"
