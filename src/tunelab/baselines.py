"""The cheap baselines a careful user compares a fine-tune against, scored in every run.

- ``majority``: always the most frequent training class;
- ``logreg_pixels`` (images): logistic regression on the raw pixels (at most 32 x 32);
- ``logreg_tfidf`` (text): logistic regression on TF-IDF of word 1-2-grams;
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
import torch.nn.functional as F

if TYPE_CHECKING:
    from tunelab.engine.model import FineTuneModel

log = logging.getLogger("tunelab")

# examples the regressions are fitted on (a stratified sample above that): with 5,000, a run on
# 10,000 Fashion-MNIST images spent 671 s on its baselines before training, longer than the training
MAX_TRAIN = 1000
PIXEL_SIZE = 32  # raw-pixel baseline resolution (area-resized): 3,072 features for colour
CS = np.logspace(-4, 1, 6)  # the C values cross-validation chooses from

Kind = Literal["pixels", "tfidf", "features"]
NAMES = {"pixels": "logreg_pixels", "tfidf": "logreg_tfidf", "features": "linear_probe"}


def _scores(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> dict[str, float]:
    from sklearn.metrics import f1_score

    return {"accuracy": float((y_true == y_pred).mean()) if len(y_true) else float("nan"),
            "macro_f1": float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro",
                                       zero_division=0))}


def pixel_features(images: torch.Tensor) -> np.ndarray:
    """uint8 [N, C, S, S] -> float [N, C * s * s] in [0, 1], area-resized to at most PIXEL_SIZE."""
    x = images.float() / 255.0
    if x.shape[-1] > PIXEL_SIZE:
        x = F.adaptive_avg_pool2d(x, PIXEL_SIZE)
    if x.shape[1] == 3 and bool((x[:, 0] == x[:, 1]).all() and (x[:, 1] == x[:, 2]).all()):
        x = x[:, :1]  # grey images decoded to 3 equal channels: one is enough
    return x.flatten(1).numpy()


def _subsample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(y) <= n:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(idx)


def _width(x: Any) -> int:
    return int(np.asarray(x).shape[1])


def fit_predict(kind: Kind, x: Any, y: np.ndarray, evals: dict[str, Any], seed: int = 0) -> dict[str, np.ndarray]:
    """Fit the features (TF-IDF for text, standardisation otherwise) and a balanced logistic
    regression on ``x``, with C chosen by stratified cross-validation when every class has at least
    two examples (plain C = 1 otherwise); the predicted classes of each eval input."""
    features, model = _fit(kind, x, y, seed)
    return {name: model.predict(features.transform(e)) for name, e in evals.items()}


def linear_probe(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The linear probe as one linear layer on the raw features ``x``: (weight [K, D], bias [K]).
    Standardisation, PCA and the logistic regression are all affine, so they fold into one map
    whose softmax gives the regression's class probabilities."""
    features, model = _fit("features", x, y, seed)
    scaler, pca = features.steps[0][1], features.steps[1][1]
    coef, icpt = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: one decision value d; softmax of [-d/2, d/2] is the sigmoid of d
        coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    a = coef @ pca.components_  # [K', D]: the regression in the standardised space
    w = a / scaler.scale_
    b = icpt - a @ (scaler.mean_ / scaler.scale_) - a @ pca.mean_
    weight = np.zeros((num_classes, x.shape[1]))
    bias = np.full(num_classes, -1e4)  # a class absent from the training split is never predicted
    weight[model.classes_], bias[model.classes_] = w, b
    return weight.astype(np.float32), bias.astype(np.float32)


def _fit(kind: Kind, x: Any, y: np.ndarray, seed: int) -> tuple[Any, Any]:
    import warnings

    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # L2-regularised logistic regression is invariant to rotations and its solution lies in the span
    # of the training examples, so a full-rank PCA changes no prediction while making every fit
    # 10-40x faster when there are fewer examples than features (the usual case here)
    features = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), max_features=100_000) \
        if kind == "tfidf" else make_pipeline(StandardScaler(), PCA(n_components=min(len(y), _width(x)),
                                                                   svd_solver="full"))
    folds = min(5, int(np.bincount(y).min()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)  # LogisticRegressionCV's changing defaults
        model = LogisticRegressionCV(Cs=CS, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                     class_weight="balanced", max_iter=300, scoring="accuracy") if folds >= 2 \
            else LogisticRegression(C=1.0, class_weight="balanced", max_iter=300)
        model.fit(features.fit_transform(x), y)
    return features, model


def score_baselines(train_x: Any, train_y: np.ndarray, evals: dict[str, tuple[Any, np.ndarray]], *, kind: Kind,
                    num_classes: int, features: tuple[np.ndarray, dict[str, np.ndarray]] | None = None,
                    seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {baseline: {accuracy, macro_f1}}}`` for every split in ``evals`` (inputs, labels).

    ``train_x`` and the eval inputs are pixel arrays (``kind="pixels"``) or lists of texts
    (``"tfidf"``); ``features`` optionally gives pretrained pooled features of the training split and
    of each eval split, for the linear probe."""
    y = np.asarray(train_y)
    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in evals}
    majority = int(np.bincount(y, minlength=num_classes).argmax())
    for name, (_, ey) in evals.items():
        out[name]["majority"] = _scores(np.asarray(ey), np.full(len(ey), majority), num_classes)
    if len(np.unique(y)) < 2:
        return out
    sub = _subsample(y, MAX_TRAIN, seed)
    fits: list[tuple[Kind, Any, dict[str, Any]]] = [(kind, train_x, {k: v[0] for k, v in evals.items()})]
    if features is not None:
        fits.append(("features", features[0], features[1]))
    for k, x, eval_inputs in fits:
        pick = [x[i] for i in sub] if isinstance(x, list) else x[sub]
        preds = fit_predict(k, pick, y[sub], eval_inputs, seed)
        for name, (_, ey) in evals.items():
            out[name][NAMES[k]] = _scores(np.asarray(ey), np.asarray(preds[name]), num_classes)
    return out


def render(scores: dict[str, dict[str, float]], model: dict[str, float] | None = None) -> str:
    """A few lines comparing the fine-tuned model with each baseline on one split."""
    rows = ([("fine-tuned model", model)] if model is not None else []) + list(scores.items())
    w = max(len(n) for n, _ in rows)
    return "\n".join(f"  {n:<{w}}  accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}" for n, m in rows)


@torch.inference_mode()
def pooled_features(model: FineTuneModel, inputs: Any, batch_size: int, device: torch.device) -> np.ndarray:
    """The model's pooled backbone features (what its head's classifier layers see), in eval mode."""
    from tunelab.engine.store import bf16_supported

    was = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(inputs), batch_size):
            x = inputs[i: i + batch_size].to(device)
            if isinstance(x, torch.Tensor) and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_supported(device)):
                out.append(model.head.pool(model.forward_features(x)).float().cpu())
    finally:
        model.train(was)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def run_baselines(splits: Any, model: FineTuneModel, *, kind: Kind, batch_size: int, device: torch.device,
                  seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Every baseline fitted on ``splits.train`` and scored on its validation and test splits.
    Call it before training: the linear probe needs the pretrained backbone's features."""
    evals = {n: s for n, s in (("val", splits.val), ("test", splits.test)) if s is not None}
    if not evals:
        return {}
    t0 = time.perf_counter()
    raw = (lambda s: list(s.texts)) if kind == "tfidf" else (lambda s: pixel_features(s.images))
    feats = (pooled_features(model, splits.train.inputs, batch_size, device),
             {n: pooled_features(model, s.inputs, batch_size, device) for n, s in evals.items()})
    out = score_baselines(raw(splits.train), splits.train.labels.numpy(),
                          {n: (raw(s), s.labels.numpy()) for n, s in evals.items()}, kind=kind,
                          num_classes=len(splits.classes), features=feats, seed=seed)
    log.info("baselines scored in %.1f s (fitted on the training split)", time.perf_counter() - t0)
    return out
