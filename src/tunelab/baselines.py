"""The cheap baselines a careful user compares a fine-tune against, scored in every run.

- ``majority``: always the most frequent training class;
- ``logreg_pixels`` (images): logistic regression on the raw pixels (at most 32 x 32,
  :mod:`tunelab.vision.baselines`);
- ``logreg_tfidf`` (text): logistic regression on TF-IDF of word 1-2-grams (:mod:`tunelab.text.baselines`);
- ``linear_probe``: logistic regression on the pretrained backbone's pooled features.

The logistic regressions weight classes by their inverse frequency (``class_weight="balanced"``)
and choose C by stratified cross-validation on the training split, as scikit-learn users do. They
take seconds on the small data sets fine-tuning is for; above ``MAX_TRAIN`` examples they are
fitted on a stratified sample of that many.

    scores = score_baselines(train_x, train_y, {"val": (val_x, val_y)}, kind="pixels")
    scores["val"]["logreg_pixels"]["accuracy"]
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from tunelab.engine.probe import fit_logistic, fit_standardised, pooled_features, stratified_sample
from tunelab.text.baselines import raw_texts, tfidf_features
from tunelab.vision.baselines import raw_pixels

if TYPE_CHECKING:
    from tunelab.engine.model import FineTuneModel

log = logging.getLogger("tunelab")

# examples the regressions are fitted on (a stratified sample above that): with 5,000, a run on
# 10,000 Fashion-MNIST images spent 671 s on its baselines before training, longer than the training
MAX_TRAIN = 1000
# a looser L-BFGS budget than the probe that chooses learning rates: on 1,000 Fashion-MNIST images
# the raw-pixel regression took 30 s instead of 82 s (2 CPU cores) at the same test accuracy
# (0.805 against 0.806); at the default budget a run's two baseline regressions outlasted its training
BASELINE_SOLVER: dict[str, Any] = {"max_iter": 100, "tol": 1e-3}

Kind = Literal["pixels", "tfidf", "features"]
NAMES = {"pixels": "logreg_pixels", "tfidf": "logreg_tfidf", "features": "linear_probe"}


def _scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    from sklearn.metrics import f1_score

    return {
        "accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
        "macro_f1": float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0)),
    }


def fit_predict(
    kind: Kind, x: Any, y: np.ndarray, evals: dict[str, Any], seed: int = 0, solver: dict[str, Any] = BASELINE_SOLVER
) -> dict[str, np.ndarray]:
    """Fit the features (TF-IDF for text, standardisation otherwise) and a balanced logistic
    regression on ``x``, with C chosen by stratified cross-validation when every class has at least
    two examples (plain C = 1 otherwise); the predicted classes of each eval input. ``solver``: the
    L-BFGS bounds of :func:`tunelab.engine.probe.fit_logistic` ({} for its own)."""
    features, model = _fit(kind, x, y, seed, solver)
    return {name: model.predict(features.transform(e)) for name, e in evals.items()}


def _fit(kind: Kind, x: Any, y: np.ndarray, seed: int, solver: dict[str, Any]) -> tuple[Any, Any]:
    if kind != "tfidf":
        return fit_standardised(x, y, seed, **solver)
    features = tfidf_features()
    return features, fit_logistic(features.fit_transform(x), y, seed, **solver)


def score_baselines(
    train_x: Any,
    train_y: np.ndarray,
    evals: dict[str, tuple[Any, np.ndarray]],
    *,
    kind: Kind,
    num_classes: int,
    features: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
    seed: int = 0,
    majority: int | None = None,
    solver: dict[str, Any] = BASELINE_SOLVER,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {baseline: {accuracy, macro_f1}}}`` for every split in ``evals`` (inputs, labels).

    ``train_x`` and the eval inputs are pixel arrays (``kind="pixels"``) or lists of texts
    (``"tfidf"``); ``features`` optionally gives pretrained pooled features of the training split and
    of each eval split, for the linear probe. ``majority``: the most frequent class of the whole
    training split, when ``train_y`` is a sample of it. ``solver``: as in :func:`fit_predict`."""
    y = np.asarray(train_y)
    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in evals}
    majority = int(np.bincount(y, minlength=num_classes).argmax()) if majority is None else majority
    for name, (_, ey) in evals.items():
        out[name]["majority"] = _scores(np.asarray(ey), np.full(len(ey), majority), num_classes)
    if len(np.unique(y)) < 2:
        return out
    sub = stratified_sample(y, MAX_TRAIN, seed)
    fits: list[tuple[Kind, Any, dict[str, Any]]] = [(kind, train_x, {k: v[0] for k, v in evals.items()})]
    if features is not None:
        fits.append(("features", features[0], features[1]))
    for k, x, eval_inputs in fits:
        pick = [x[i] for i in sub] if isinstance(x, list) else x[sub]
        preds = fit_predict(k, pick, y[sub], eval_inputs, seed, solver)
        for name, (_, ey) in evals.items():
            out[name][NAMES[k]] = _scores(np.asarray(ey), np.asarray(preds[name]), num_classes)
    return out


def render(scores: dict[str, dict[str, float]], model: dict[str, float] | None = None) -> str:
    """A few lines comparing the fine-tuned model with each baseline on one split."""
    rows = ([("fine-tuned model", model)] if model is not None else []) + list(scores.items())
    w = max(len(n) for n, _ in rows)
    return "\n".join(f"  {n:<{w}}  accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}" for n, m in rows)


def _raw(kind: Kind, split: Any, rows: np.ndarray | None = None) -> Any:
    """What the raw-input regression reads of a split (all of it, or ``rows``): texts or pixels."""
    return (raw_texts if kind == "tfidf" else raw_pixels)(split, rows)


def run_baselines(
    splits: Any, model: FineTuneModel, *, kind: Kind, batch_size: int, device: torch.device, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Every baseline fitted on ``splits.train`` and scored on its validation and test splits.
    Call it before training: the linear probe needs the pretrained backbone's features."""
    evals = {n: s for n, s in (("val", splits.val), ("test", splits.test)) if s is not None}
    if not evals:
        return {}
    t0 = time.perf_counter()
    y = splits.train.labels.numpy()
    # the regressions see at most MAX_TRAIN training examples: only those go through the network
    sub = stratified_sample(y, MAX_TRAIN, seed)
    feats = (
        pooled_features(model, splits.train.inputs[torch.from_numpy(sub)], batch_size, device),
        {n: pooled_features(model, s.inputs, batch_size, device) for n, s in evals.items()},
    )
    out = score_baselines(
        _raw(kind, splits.train, sub),
        y[sub],
        {n: (_raw(kind, s), s.labels.numpy()) for n, s in evals.items()},
        kind=kind,
        num_classes=len(splits.classes),
        features=feats,
        seed=seed,
        majority=int(np.bincount(y, minlength=len(splits.classes)).argmax()),
    )
    log.info("baselines scored in %.1f s (fitted on the training split)", time.perf_counter() - t0)
    return out
