"""Classification metrics, computed with scikit-learn."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, classes: list[str], *, detailed: bool = False
) -> dict[str, Any]:
    """loss, accuracy and macro-F1; with ``detailed``, per-class precision/recall/F1 and the confusion matrix."""
    y = labels.numpy()
    pred = logits.argmax(1).numpy()
    ks = list(range(len(classes)))
    out: dict[str, Any] = {
        "loss": float(F.cross_entropy(logits.float(), labels)),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "macro_f1": float(f1_score(y, pred, labels=ks, average="macro", zero_division=0)),
    }
    if detailed:
        p, r, f, s = precision_recall_fscore_support(y, pred, labels=ks, zero_division=0)
        out["per_class"] = {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        }
        out["confusion_matrix"] = confusion_matrix(y, pred, labels=ks).tolist()
        out["n"] = len(y)
    return out


def format_metrics(m: dict[str, Any]) -> str:
    return f"accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  loss {m['loss']:.4f}  (n={m.get('n', '?')})"


def per_class_table(m: dict[str, Any]) -> str:
    pc = m["per_class"]
    w = max(len(c) for c in list(pc) + ["class"])
    lines = [f"{'class':<{w}}  precision  recall     f1  support"]
    for c, v in pc.items():
        lines.append(f"{c:<{w}}  {v['precision']:>9.3f}  {v['recall']:>6.3f}  {v['f1']:>5.3f}  {v['support']:>7}")
    return "\n".join(lines)


def topk(probs: np.ndarray, k: int) -> list[list[int]]:
    return np.argsort(-probs, axis=1)[:, :k].tolist()


def most_confidently_wrong(probs: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` misclassified examples with the highest predicted probability, highest first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    return wrong[np.argsort(-probs[wrong, pred[wrong]])][:n]
