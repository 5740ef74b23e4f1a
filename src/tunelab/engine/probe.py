"""The linear probe: a balanced logistic regression (C by stratified cross-validation) on the frozen
backbone's pooled features, folded into the head's linear layer. A probe stage fits it; the
baselines of every run score it."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tunelab.engine.device import to_memory_format
from tunelab.engine.model import FineTuneModel
from tunelab.engine.store import bf16_supported

CS = np.logspace(-4, 1, 6)  # the C values cross-validation chooses from


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` examples keeping the class (stratum) shares of ``y`` (all of them
    when fewer; a plain random sample when a stratum is too small to split)."""
    if len(y) <= n:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    try:
        idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    except ValueError:  # a stratum of one example, or more strata than examples left out
        idx = np.random.default_rng(seed).choice(len(y), n, replace=False)
    return np.sort(idx)


def fit_logistic(z: Any, y: np.ndarray, seed: int, max_iter: int = 300, tol: float = 1e-4) -> Any:
    """A class-balanced logistic regression on features ``z``, C by stratified cross-validation when
    every class has two examples or more (plain C = 1 otherwise); ``max_iter`` and ``tol`` bound
    L-BFGS (the larger Cs rarely converge, so they set most of the cost)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    folds = min(5, int(np.bincount(y).min()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # LogisticRegressionCV's changing defaults
        model = (
            LogisticRegressionCV(
                Cs=CS,
                cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                class_weight="balanced",
                max_iter=max_iter,
                tol=tol,
                scoring="accuracy",
            )
            if folds >= 2
            else LogisticRegression(C=1.0, class_weight="balanced", max_iter=max_iter, tol=tol)
        )
        model.fit(z, y)
    return model


def cv_accuracy(model: Any) -> float | None:
    """The cross-validated accuracy of a :func:`fit_logistic` model at its chosen C (the mean over
    folds); None when it was fitted without cross-validation."""
    scores = getattr(model, "scores_", None)
    if not scores:
        return None
    per_c = np.mean(list(scores.values()), axis=0).mean(axis=0)  # every class holds the same [folds, Cs]
    return float(per_c.max())


def standardise(x: Any) -> tuple[Any, np.ndarray]:
    """Standardisation + full-rank PCA fitted on ``x``: (features pipeline, transformed ``x``)."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # L2-regularised linear models (logistic or ridge regression) are invariant to rotations and
    # their solution lies in the span of the training examples, so a full-rank PCA changes no
    # prediction while making every fit 10-40x faster when there are fewer examples than features
    # (the usual case here)
    n, width = np.asarray(x).shape
    features = make_pipeline(StandardScaler(), PCA(n_components=min(n, width), svd_solver="full"))
    return features, features.fit_transform(x)


def fit_standardised(x: Any, y: np.ndarray, seed: int, **solver: Any) -> tuple[Any, Any]:
    """:func:`standardise`, then :func:`fit_logistic`: (features pipeline, model)."""
    features, z = standardise(x)
    return features, fit_logistic(z, y, seed, **solver)


def linear_probe(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The linear probe as one linear layer on the raw features ``x``: (weight [K, D], bias [K]).
    Standardisation, PCA and the logistic regression are all affine, so they fold into one map
    whose softmax gives the regression's class probabilities."""
    features, model = fit_standardised(x, y, seed)
    scaler, pca = features.steps[0][1], features.steps[1][1]
    coef, icpt = logit_rows(model)
    a = coef @ pca.components_  # [K', D]: the regression in the standardised space
    return all_classes(model.classes_, a / scaler.scale_, icpt - a @ (scaler.mean_ / scaler.scale_) - a @ pca.mean_, num_classes)


def logit_rows(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """A fitted logistic regression as one row of logits a class it saw: (coef [K', D], intercept [K'])."""
    coef, icpt = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: one decision value d; softmax of [-d/2, d/2] is the sigmoid of d
        coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    return coef, icpt


def all_classes(seen: np.ndarray, w: np.ndarray, b: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``w``, ``b`` of the classes ``seen`` placed among ``num_classes`` (float32): a class absent
    from the training split gets bias -1e4 and is never predicted."""
    weight = np.zeros((num_classes, w.shape[1]))
    bias = np.full(num_classes, -1e4)
    weight[seen], bias[seen] = w, b
    return weight.astype(np.float32), bias.astype(np.float32)


@torch.inference_mode()
def pooled_features(model: FineTuneModel, inputs: Any, batch_size: int, device: torch.device) -> np.ndarray:
    """The model's pooled backbone features (what its head's classifier layers see), in eval mode."""
    was = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(inputs), batch_size):
            x = to_memory_format(inputs[i : i + batch_size].to(device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_supported(device)):
                out.append(model.head.pool(model.forward_features(x)).float().cpu())
    finally:
        model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def fit_probe(model: FineTuneModel, data: Any, batch_size: int, device: torch.device, seed: int) -> dict[str, Any]:
    """A probe stage: the head's linear layer set to the balanced logistic regression (C by
    cross-validation) on the frozen backbone's pooled features of the training split; returns the
    epoch's metrics row."""
    t0 = time.perf_counter()
    fc = model.head.fc
    x = pooled_features(model, data.inputs, batch_size, device)
    weight, bias = linear_probe(x, data.labels.numpy(), fc.out_features, seed=seed)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(weight))
        fc.bias.copy_(torch.from_numpy(bias))
        logits = torch.from_numpy(x).to(device) @ fc.weight.T + fc.bias
    y = data.labels.to(device)
    secs = time.perf_counter() - t0
    return {
        "train_loss": float(F.cross_entropy(logits, y)),
        "train_accuracy": float((logits.argmax(1) == y).float().mean()),
        "seconds": secs,
        "img_per_s": len(y) / secs,
        "lr": 0.0,
        "lr_steps": [],
    }
