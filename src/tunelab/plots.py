"""Figures of a run (matplotlib, PNG): curves with stage boundaries, learning rate per step,
penalties, normalised confusion matrix, per-class precision/recall, most confidently wrong images;
precision-recall curves per label (multi-label); predicted against true values and the residuals
(regression)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from tunelab.metrics import most_confidently_wrong


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def _stage_lines(ax: Any, history: list[dict[str, Any]]) -> None:
    for i in range(1, len(history)):
        if history[i]["stage"] != history[i - 1]["stage"]:
            ax.axvline(i + 0.5, color="grey", ls="--", lw=1)
            ax.text(i + 0.6, ax.get_ylim()[1], f"stage {history[i]['stage'] + 1}", va="top", fontsize=8, color="grey")


def curves(history: list[dict[str, Any]], path: Path, metric: str = "accuracy", title: str | None = None) -> Path:
    """Loss and ``metric`` (the primary metric, ``title`` its name) per epoch, train (where the
    epochs recorded it) and validation, stage boundaries dashed."""
    x = np.arange(1, len(history) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, name in ((axes[0], "loss", "loss"), (axes[1], metric, title or metric)):
        if history and f"train_{key}" in history[0]:
            ax.plot(x, [r[f"train_{key}"] for r in history], "o-", ms=3, label="train")
        if history and f"val_{key}" in history[0]:
            ax.plot(x, [r.get(f"val_{key}") for r in history], "o-", ms=3, label="validation")
        ax.set_xlabel("epoch (all stages)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
        _stage_lines(ax, history)
    return _save(fig, path)


def learning_rate(history: list[dict[str, Any]], path: Path) -> Path:
    """The learning rate at every optimizer step (subsampled in long epochs)."""
    ys: list[float] = []
    xs: list[float] = []
    for i, r in enumerate(history):
        steps = r.get("lr_steps") or [r["lr"]]
        xs += list(i + np.linspace(0, 1, len(steps), endpoint=False) + 0.5)
        ys += steps
    fig, ax = plt.subplots(figsize=(11, 2.8))
    ax.plot(xs, ys)
    if any(y > 0 for y in ys):  # a probe stage has no optimizer: lr 0, nothing to show on a log axis
        ax.set_yscale("log")
    ax.set_xlabel("epoch (all stages)")
    ax.set_title("learning rate per step")
    ax.grid(alpha=0.3)
    _stage_lines(ax, history)
    return _save(fig, path)


def penalties(history: list[dict[str, Any]], path: Path) -> Path | None:
    keys = sorted({k for r in history for k in r if k.startswith("penalty_")})
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(11, 2.8))
    x = np.arange(1, len(history) + 1)
    for k in keys:
        ax.plot(x, [r.get(k, np.nan) for r in history], "o-", ms=3, label=k[8:])
    ax.set_xlabel("epoch (all stages)")
    ax.set_title("penalty values (mean per epoch)")
    ax.grid(alpha=0.3)
    ax.legend()
    _stage_lines(ax, history)
    return _save(fig, path)


def confusion(metrics: dict[str, Any], classes: list[str], path: Path, title: str) -> Path:
    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * k, 1.0 + 0.5 * k))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{norm[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def per_class(metrics: dict[str, Any], path: Path, title: str) -> Path:
    pc = metrics["per_class"]
    names = list(pc)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(names)), 3.2))
    ax.bar(x - 0.2, [pc[c]["precision"] for c in names], 0.4, label="precision")
    ax.bar(x + 0.2, [pc[c]["recall"] for c in names], 0.4, label="recall")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def wrong_gallery(
    images: np.ndarray, labels: np.ndarray, probs: np.ndarray, classes: list[str], path: Path, n: int = 16
) -> Path | None:
    """The ``n`` validation images the model got wrong with the highest confidence."""
    pred = probs.argmax(1)
    wrong = most_confidently_wrong(probs, labels, n)
    if len(wrong) == 0:
        return None
    cols = min(8, len(wrong))
    rows = int(np.ceil(len(wrong) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 2.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i].transpose(1, 2, 0))
        ax.set_title(f"true {classes[labels[i]]}\npred {classes[pred[i]]} {probs[i, pred[i]]:.2f}", fontsize=7)
    fig.suptitle("most confidently wrong validation images")
    return _save(fig, path)


MAX_PR_LABELS = 64  # beyond this many labels, the most frequent ones are drawn


def precision_recall(
    targets: np.ndarray, probs: np.ndarray, names: list[str], thresholds: list[float] | None, path: Path, title: str
) -> Path | None:
    """One small precision-recall curve per label (multi-hot ``targets``, sigmoid ``probs``), the
    point of its decision threshold marked; labels without a positive example are left out."""
    from sklearn.metrics import precision_recall_curve

    support = targets.sum(0)
    shown = [int(i) for i in np.argsort(-support, kind="stable")[:MAX_PR_LABELS] if support[i] > 0]
    if not shown:
        return None
    cols = min(8, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.9 * cols, 0.4 + 1.9 * rows), squeeze=False, sharex=True, sharey=True, layout="constrained"
    )
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for ax, i in zip(axes.flat, sorted(shown)):
        precision, recall, _ = precision_recall_curve(targets[:, i], probs[:, i])
        ax.plot(recall, precision, lw=1.2)
        if thresholds is not None:
            pred = probs[:, i] >= thresholds[i]
            hit = float((pred & (targets[:, i] > 0.5)).sum())
            ax.plot(hit / support[i], hit / max(pred.sum(), 1), "o", ms=4, color="C3")
        ax.set_title(f"{names[i]} (n={int(support[i])})", fontsize=7)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    more = f", the {len(shown)} most frequent labels" if len(shown) < int((support > 0).sum()) else ""
    fig.suptitle(f"{title}{more} (x recall, y precision; dot: the decision threshold)", fontsize=9)
    return _save(fig, path)


def regression(values: np.ndarray, targets: np.ndarray, name: str, path: Path, title: str) -> Path:
    """Predicted against true values (the diagonal is a perfect model) and the residuals' histogram,
    with their mean (bias), median and 90th percentile of the absolute error in the figure."""
    v, y = np.asarray(values, dtype=float).reshape(-1), np.asarray(targets, dtype=float).reshape(-1)
    residual = v - y
    fig, (ax, hx) = plt.subplots(1, 2, figsize=(11, 4))
    ax.scatter(y, v, s=10, alpha=0.6)
    lo, hi = float(min(y.min(), v.min())), float(max(y.max(), v.max()))
    ax.plot([lo, hi], [lo, hi], "--", color="grey", lw=1)
    ax.set_xlabel(f"true {name}")
    ax.set_ylabel(f"predicted {name}")
    ax.set_title(f"{title}: predicted against true (n={len(y)})")
    ax.grid(alpha=0.3)
    hx.hist(residual, bins=min(30, max(5, len(y) // 4)))
    hx.axvline(0, color="grey", lw=1)
    err = np.abs(residual)
    hx.set_title(
        f"residuals (predicted - true): mean {residual.mean():.3g}, median |error| {np.median(err):.3g}, "
        f"90% under {np.quantile(err, 0.9):.3g}",
        fontsize=9,
    )
    hx.set_xlabel(name)
    hx.grid(alpha=0.3)
    return _save(fig, path)
