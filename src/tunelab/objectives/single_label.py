"""Single-label classification: one class per example, softmax cross-entropy (optionally
class-weighted and label-smoothed), accuracy as the primary metric, macro-F1 beside it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from tunelab.errors import DataError
from tunelab.objectives import BaselineNames, Logistic
from tunelab.objectives._base import BaseObjective

log = logging.getLogger("tunelab")


def class_weights(mode: str, labels: torch.Tensor, num_classes: int, device: torch.device) -> torch.Tensor | None:
    """Per-class loss weights, the inverse of each class's training frequency, normalised so that
    the mean weight of an example is 1 (the loss keeps its scale); None for an unweighted loss."""
    labels = labels[labels >= 0]  # unlabelled examples (distill.unlabeled, label -1) have no class to weigh
    counts = torch.bincount(labels, minlength=num_classes).double()
    present = counts[counts > 0]
    if mode == "none" or (mode == "auto" and present.max() <= 1.5 * present.min()):
        return None
    w = torch.where(counts > 0, len(labels) / (len(present) * counts.clamp(min=1)), torch.zeros_like(counts))
    log.info("class weights (regularization.class_weight: %s): %s", mode, ", ".join(f"{v:.2f}" for v in w.tolist()))
    return w.float().to(device)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets [B, classes] (mixed batches, smoothed labels folded in)."""
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, classes: list[str], *, detailed: bool = False
) -> dict[str, Any]:
    """loss, accuracy and macro-F1; with ``detailed``, per-class precision/recall/F1 and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

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


class SingleLabel(BaseObjective):
    name: ClassVar[str] = "single_label"
    primary: ClassVar[str] = "accuracy"
    reported: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")
    minimize: ClassVar[frozenset[str]] = frozenset()
    train_metric: ClassVar[str | None] = "accuracy"
    exclusive: ClassVar[bool] = True
    examples: ClassVar[str] = "class"
    baselines: ClassVar[BaselineNames] = BaselineNames("majority", "logreg", "linear_probe")
    # logits, as timm and transformers classifiers give them (and as exports always have)
    outputs: ClassVar[str] = "logits"
    exported: ClassVar[str] = "logits"
    problem_type: ClassVar[str] = "single_label_classification"

    # what the report and the model card say of the problem type
    hub_tag: ClassVar[str | None] = None  # the Hub's tag beside the pipeline tag
    baseline_summary: ClassVar[str] = (
        "majority class; logistic regression on the raw inputs; the linear probe on the pretrained features"
    )
    data_head: ClassVar[str] = "class"  # the first column of the data table
    imbalance: ClassVar[str | None] = "class imbalance: the largest training class has {ratio}x the images of the smallest"

    def __init__(self) -> None:
        self.weighting, self.smoothing = "none", 0.0
        self.weight: torch.Tensor | None = None

    def configure(self, options: dict[str, Any]) -> None:
        self.weighting = options.get("class_weight", "none")
        self.smoothing = float(options.get("label_smoothing", 0.0))

    def encode(
        self, cells: Sequence[str], where: Callable[[int], str], names: list[str] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        classes = names if names is not None else sorted(set(cells))
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(cells) - set(index))
        if unknown:
            first = list(cells).index(unknown[0])
            raise DataError(
                f"{where(first)}: labels {', '.join(unknown)} are not among the training classes ({', '.join(classes)})"
            )
        return np.asarray([index[c] for c in cells], dtype=np.int64), classes

    def remap(self, labels: np.ndarray, names: list[str], onto: list[str], what: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(onto)}
        unknown = [c for c in names if c not in index]
        if unknown:
            raise DataError(
                f"{what} has classes not in the training data: {', '.join(unknown)}; training classes: {', '.join(onto)}"
            )
        return np.asarray([index[c] for c in names], dtype=np.int64)[labels]

    def strata(self, labels: np.ndarray) -> np.ndarray:
        return labels

    def split_groups(self, labels: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
        return labels, names  # the classes, named as the data names them

    def check(self, labels: np.ndarray, names: list[str], source: str) -> None:
        if len(names) < 2:
            raise DataError(
                f"{source}: only one class ({', '.join(names)}); classification needs at least two "
                "(one subfolder, or one label of the manifest, per class)"
            )

    def fit(self, labels: torch.Tensor, k: int, device: torch.device) -> None:
        self.weight = class_weights(self.weighting, labels, k, device)

    def decoding(self, names: list[str]) -> dict[str, Any]:
        return {"problem": self.name, "classes": list(names), "activation": "softmax", "decision": "argmax"}

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.is_floating_point():  # soft targets of a mixed batch, label smoothing folded in
            return soft_cross_entropy(outputs, target)
        return F.cross_entropy(outputs, target, weight=self.weight, label_smoothing=self.smoothing)

    def hits(self, outputs: torch.Tensor, target: torch.Tensor) -> int:
        return int((outputs.argmax(1) == target).sum())

    def metrics(self, outputs: torch.Tensor, target: torch.Tensor, names: list[str], *, detailed: bool = False) -> dict[str, Any]:
        return classification_metrics(outputs, target, names, detailed=detailed)

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        return outputs.float().softmax(1).numpy()

    def counts(self, labels: np.ndarray, k: int) -> list[float]:
        return np.bincount(labels[labels >= 0], minlength=k).tolist()

    def constant_outputs(self, targets: np.ndarray, k: int) -> torch.Tensor:
        """The most frequent training class, as a one-hot row."""
        return F.one_hot(torch.tensor([int(np.bincount(targets, minlength=k).argmax())]), k).float()

    def fit_linear(self, z: Any, targets: np.ndarray, k: int, logistic: Logistic) -> Callable[[Any], torch.Tensor]:
        """The balanced logistic regression; its predicted classes as one-hot rows (a class absent
        from ``targets`` is never predicted)."""
        model = logistic(z, targets)
        return lambda e: F.one_hot(torch.from_numpy(np.asarray(model.predict(e), dtype=np.int64)), k).float()

    def predictions(self, decoded: np.ndarray, names: list[str], top: int) -> list[dict[str, Any]]:
        order = np.argsort(-decoded, axis=1)[:, :top]
        return [{"top": [(names[j], float(p[j])) for j in row]} for row, p in zip(order, decoded)]
