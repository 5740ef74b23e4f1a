"""The cheap baselines a careful user compares a fine-tune against, scored in every run.

Each problem type (:mod:`tunelab.objectives`) names its three and provides their models
(``constant_outputs``, ``fit_linear``); this module fits them on the run's inputs and scores them
with the objective's own metrics (``objective.reported``, the primary first):

- a constant predictor: the majority class (single-label), each label at its training frequency
  (multi-label), the training mean (regression);
- the problem's linear model on the raw inputs, ``<model>_pixels`` (images: the raw pixels, at most
  32 x 32) or ``<model>_tfidf`` (text: TF-IDF of word 1-2-grams): a class-balanced logistic
  regression (``logreg``), one per label (multi-label), or ridge regression (``ridge``), the inputs
  and their features the modality's (``Task.raw``: :class:`tunelab.engine.task.RawInputs`);
- the same model on the pretrained backbone's pooled features: ``linear_probe``, ``ridge_probe``.

The single-label logistic regressions weight classes by their inverse frequency
(``class_weight="balanced"``) and choose C by stratified cross-validation on the training split, as
scikit-learn users do. They take seconds on the small data sets fine-tuning is for; above
``MAX_TRAIN`` examples they are fitted on a sample of that many, stratified as the objective
stratifies splits.

    scores = score_baselines(train_x, train_y, {"val": (val_x, val_y)}, raw=PixelInputs(),
                             objective=objective_for("single_label"), names=classes)
    scores["val"]["logreg_pixels"]["accuracy"]
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tunelab.engine.probe import fit_logistic, pooled_features, standardise, stratified_sample
from tunelab.metrics import SHOWN

if TYPE_CHECKING:
    from tunelab.engine.model import FineTuneModel
    from tunelab.engine.task import RawInputs
    from tunelab.objectives import Objective

log = logging.getLogger("tunelab")

# examples the regressions are fitted on (a stratified sample above that): with 5,000, a run on
# 10,000 Fashion-MNIST images spent 671 s on its baselines before training, longer than the training
MAX_TRAIN = 1000
# a looser L-BFGS budget than the probe that chooses learning rates: on 1,000 Fashion-MNIST images
# the raw-pixel regression took 30 s instead of 82 s (2 CPU cores) at the same test accuracy
# (0.805 against 0.806); at the default budget a run's two baseline regressions outlasted its training
BASELINE_SOLVER: dict[str, Any] = {"max_iter": 100, "tol": 1e-3}


def name_of(objective: Objective, raw: RawInputs | None) -> str:
    """The name of the objective's linear baseline on ``raw`` inputs, or on the pretrained features
    when None ("logreg_pixels", "linear_probe")."""
    names = objective.baselines
    return names.probe if raw is None else f"{names.model}_{raw.name}"


def _scores(objective: Objective, outputs: torch.Tensor, targets: np.ndarray, names: list[str]) -> dict[str, float]:
    """The objective's reported metrics (the primary first) of ``outputs`` against ``targets``."""
    m = objective.metrics(outputs, torch.from_numpy(np.asarray(targets)), names)
    return {k: m[k] for k in objective.reported}


def fit_predict(
    raw: RawInputs | None,
    x: Any,
    y: np.ndarray,
    evals: dict[str, Any],
    *,
    objective: Objective,
    k: int,
    seed: int = 0,
    solver: dict[str, Any] = BASELINE_SOLVER,
) -> dict[str, torch.Tensor]:
    """Fit the features (the raw inputs' own, or standardised pretrained features when ``raw`` is
    None) and the objective's linear model on ``x`` and targets ``y`` of ``k`` names; the outputs for
    each eval input. ``solver``: the L-BFGS bounds of :func:`tunelab.engine.probe.fit_logistic` ({} for its own)."""
    features, z = raw.features(x) if raw is not None else standardise(x)
    predict = objective.fit_linear(z, y, k, lambda zz, c: fit_logistic(zz, c, seed, **solver))
    return {name: predict(features.transform(e)) for name, e in evals.items()}


def score_baselines(
    train_x: Any,
    train_y: np.ndarray,
    evals: dict[str, tuple[Any, np.ndarray]],
    *,
    raw: RawInputs | None,
    objective: Objective,
    names: list[str],
    features: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
    seed: int = 0,
    constant_of: np.ndarray | None = None,
    solver: dict[str, Any] = BASELINE_SOLVER,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {baseline: metrics}}`` for every split in ``evals`` (inputs, targets), the metrics
    those ``objective.reported`` names (``names``: the model's output names).

    ``train_x`` and the eval inputs are what ``raw.inputs`` gives (pixel arrays, lists of texts), or
    pretrained features (``raw`` None); ``features`` optionally gives pretrained pooled features of the training split and
    of each eval split, for the probe. ``constant_of``: the targets of the whole training split,
    when ``train_y`` is a sample of it. ``solver``: as in :func:`fit_predict`."""
    y = np.asarray(train_y)
    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in evals}
    row = objective.constant_outputs(y if constant_of is None else np.asarray(constant_of), len(names))
    for name, (_, ey) in evals.items():
        out[name][objective.baselines.constant] = _scores(objective, row.expand(len(ey), -1), ey, names)
    if len(np.unique(y, axis=0)) < 2:  # every training target the same: nothing for a model to fit
        return out
    sub = stratified_sample(objective.strata(y), MAX_TRAIN, seed)
    fits: list[tuple[RawInputs | None, Any, dict[str, Any]]] = [(raw, train_x, {k: v[0] for k, v in evals.items()})]
    if features is not None:
        fits.append((None, features[0], features[1]))
    for fit_kind, x, eval_inputs in fits:
        pick = [x[i] for i in sub] if isinstance(x, list) else x[sub]
        outputs = fit_predict(fit_kind, pick, y[sub], eval_inputs, objective=objective, k=len(names), seed=seed, solver=solver)
        for name, (_, ey) in evals.items():
            out[name][name_of(objective, fit_kind)] = _scores(objective, outputs[name], ey, names)
    return out


def render(scores: dict[str, dict[str, float]], model: dict[str, float] | None = None) -> str:
    """A few lines comparing the fine-tuned model with each baseline on one split, on the metrics
    the baselines were scored by (the primary first)."""
    keys = list(next(iter(scores.values()))) if scores else []
    rows = ([("fine-tuned model", model)] if model is not None else []) + list(scores.items())
    w = max(len(n) for n, _ in rows)
    return "\n".join(f"  {n:<{w}}  " + "  ".join(f"{SHOWN.get(k, k)} {m[k]:.4f}" for k in keys) for n, m in rows)


def run_baselines(
    splits: Any,
    model: FineTuneModel,
    *,
    raw: RawInputs,
    objective: Objective,
    batch_size: int,
    device: torch.device,
    seed: int,
) -> dict[str, dict[str, dict[str, float]]]:
    """Every baseline of ``objective`` fitted on ``splits.train`` and scored on its validation and
    test splits. Call it before training: the probe needs the pretrained backbone's features."""
    evals = {n: s for n, s in (("val", splits.val), ("test", splits.test)) if s is not None}
    if not evals:
        return {}
    t0 = time.perf_counter()
    y = splits.train.labels.numpy()
    # the regressions see at most MAX_TRAIN training examples: only those go through the network
    sub = stratified_sample(objective.strata(y), MAX_TRAIN, seed)
    feats = (
        pooled_features(model, splits.train.inputs[torch.from_numpy(sub)], batch_size, device),
        {n: pooled_features(model, s.inputs, batch_size, device) for n, s in evals.items()},
    )
    out = score_baselines(
        raw.inputs(splits.train, sub),
        y[sub],
        {n: (raw.inputs(s), s.labels.numpy()) for n, s in evals.items()},
        raw=raw,
        objective=objective,
        names=list(splits.classes),
        features=feats,
        seed=seed,
        constant_of=y,
    )
    log.info("baselines scored in %.1f s (fitted on the training split)", time.perf_counter() - t0)
    return out
