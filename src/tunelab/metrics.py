"""Metrics as a user reads them: one line of a split's metrics and the per-class (per-label)
table, whatever the problem type computed (:mod:`tunelab.objectives`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tunelab.objectives.single_label import classification_metrics

__all__ = ["classification_metrics", "format_metrics", "most_confidently_wrong", "per_class_table", "topk"]

SHOWN = {
    "macro_f1": "macro-F1",
    "micro_f1": "micro-F1",
    "map": "mAP",
    "subset_accuracy": "subset accuracy",
    "r2": "R^2",
    "mae": "MAE",
    "rmse": "RMSE",
    "spearman": "Spearman",
}


def format_metrics(m: dict[str, Any]) -> str:
    """The split's metrics on one line: the problem's metrics (the primary first), then the loss."""
    scalars = [k for k, v in m.items() if isinstance(v, float) and k != "loss"]
    parts = [f"{SHOWN.get(k, k)} {m[k]:.4f}" for k in scalars] + [f"loss {m['loss']:.4f}"]
    return "  ".join(parts) + f"  (n={m.get('n', '?')})"


def per_class_table(m: dict[str, Any]) -> str:
    """Precision, recall, F1 and support of every class (for multi-label also the average
    precision and decision threshold of every label); empty for a regression."""
    rows = m.get("per_class") or m.get("per_label")
    if not rows:
        return ""
    head = "class" if "per_class" in m else "label"
    cols = [c for c in ("precision", "recall", "f1", "ap", "threshold") if c in next(iter(rows.values()))]
    w = max(len(c) for c in list(rows) + [head])
    lines = [f"{head:<{w}}" + "".join(f"  {c:>9}" for c in cols) + "  support"]
    for c, v in rows.items():
        lines.append(f"{c:<{w}}" + "".join(f"  {v[k]:>9.3f}" for k in cols) + f"  {v['support']:>7}")
    return "\n".join(lines)


def topk(probs: np.ndarray, k: int) -> list[list[int]]:
    return np.argsort(-probs, axis=1)[:, :k].tolist()


def most_confidently_wrong(probs: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` misclassified examples with the highest predicted probability, highest first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    return wrong[np.argsort(-probs[wrong, pred[wrong]])][:n]
