"""Figures of a run (matplotlib, PNG): curves with stage boundaries, learning rate per step,
penalties, normalised confusion matrix, per-class precision/recall, most confidently wrong images."""

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


def curves(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss and accuracy per epoch, train and validation, stage boundaries dashed."""
    x = np.arange(1, len(history) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        ax.plot(x, [r[f"train_{key}"] for r in history], "o-", ms=3, label="train")
        if history and f"val_{key}" in history[0]:
            ax.plot(x, [r.get(f"val_{key}") for r in history], "o-", ms=3, label="validation")
        ax.set_xlabel("epoch (all stages)")
        ax.set_title(title)
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
