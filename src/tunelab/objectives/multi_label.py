"""Multi-label classification: any number of labels per example (tags, defects, content flags).
A sigmoid per label with binary cross-entropy (optionally a positive weight per label), one
decision threshold per label chosen on the validation split, mean average precision (mAP) as the
primary metric, micro and macro F1, subset accuracy and per-label precision and recall beside it.

Labels are read from one column holding an example's labels joined by ``data.label_separator``
(``cat|dog``), as fastai's ``MultiCategoryBlock`` and Kaggle's tag files have them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tunelab.errors import DataError
from tunelab.objectives import BaselineNames, Logistic
from tunelab.objectives._base import BaseObjective, plain_cell

log = logging.getLogger("tunelab")

FLAGS = {"1": True, "1.0": True, "true": True, "yes": True, "0": False, "0.0": False, "false": False, "no": False, "": False}
SEPARATORS = ("|", ";", ",", " ")  # what label files join labels with, checked when the configured one is unused
# the one-vs-rest baselines fix C at scikit-learn's default instead of cross-validating it per
# label: on emoji-tags and debian-debtags (50 labels, 1,000 training examples, one thread)
# cross-validation took 25 s (pixels) and 21 s (TF-IDF) instead of 4 s and 1.5 s, for the same test
# mAP (0.328 against 0.325, 0.502 against 0.508)
BASELINE_C = 1.0
MIN_POSITIVES = 10  # validation positives a label needs for a decision threshold of its own
MIN_GROUP = 5  # examples a stratum needs to be split into training, validation and test parts
MAX_POS_WEIGHT = 30.0  # a label on 1 example in 1,000 would otherwise get a weight of 1,000 and swamp the loss


def split_cell(cell: str, separator: str) -> list[str]:
    return [p.strip() for p in cell.split(separator) if p.strip()]


def best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """The threshold on ``p`` with the highest F1 for the binary targets ``y`` (0.5 when ``y`` has
    no positive: there is nothing to choose it on), halfway between neighbouring scores."""
    if y.sum() == 0 or y.sum() == len(y):
        return 0.5
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    i = int(np.argmax(f1[:-1]))
    below = p[p < thresholds[i]]
    return float((thresholds[i] + below.max()) / 2) if len(below) else float(thresholds[i])


def choose_thresholds(p: np.ndarray, y: np.ndarray, min_positives: int | None = None) -> np.ndarray:
    """A threshold per label: its own best-F1 threshold where the validation split has at least
    ``min_positives`` (MIN_POSITIVES) of its positives, else the one threshold with the best F1 over
    all labels' decisions together (micro-F1): a label's own threshold chosen on a handful of
    positives fits their noise (measured in benchmarks/results/problems.md)."""
    least = MIN_POSITIVES if min_positives is None else min_positives
    shared = best_threshold(p.ravel(), y.ravel())
    return np.asarray([best_threshold(p[:, i], y[:, i]) if y[:, i].sum() >= least else shared for i in range(p.shape[1])])


class MultiLabel(BaseObjective):
    name: ClassVar[str] = "multi_label"
    primary: ClassVar[str] = "map"
    reported: ClassVar[tuple[str, ...]] = ("map", "micro_f1", "macro_f1", "subset_accuracy")
    minimize: ClassVar[frozenset[str]] = frozenset()
    train_metric: ClassVar[str | None] = "subset_accuracy"
    exclusive: ClassVar[bool] = False
    examples: ClassVar[str] = "label"
    baselines: ClassVar[BaselineNames] = BaselineNames("majority", "logreg", "linear_probe")
    outputs: ClassVar[str] = "logits"
    exported: ClassVar[str] = "probabilities"
    problem_type: ClassVar[str] = "multi_label_classification"

    # what the report and the model card say of the problem type
    hub_tag: ClassVar[str | None] = "multi-label-classification"  # the Hub's tag beside the pipeline tag
    baseline_summary: ClassVar[str] = (
        "per-label majority; one-vs-rest logistic regression on the raw inputs; the linear probe on the pretrained features"
    )
    data_head: ClassVar[str] = "label"  # the first column of the data table
    imbalance: ClassVar[str | None] = "label imbalance: the most frequent training label is on {ratio}x the images of the rarest"

    def __init__(self) -> None:
        self.separator, self.weighting = "|", "none"
        self.label_columns: tuple[str, ...] = ()  # several 0/1 columns instead of one label column
        self.pos_weight: torch.Tensor | None = None
        self.prior: torch.Tensor | None = None  # each label's training frequency (fit)
        self.thresholds: np.ndarray | None = None  # per label; 0.5 until chosen on validation

    def configure(self, options: dict[str, Any]) -> None:
        self.separator = options.get("label_separator", "|")
        self.label_columns = tuple(options.get("label_columns") or ())
        self.weighting = options.get("class_weight", "none")

    def columns(self, column: str) -> list[str]:
        return list(self.label_columns) or [column]

    def cell(self, row: Mapping[str, Any], column: str, where: str) -> str:
        """The label cell, or with ``data.label_columns`` the names of the columns set to 1, joined."""
        if not self.label_columns:
            return plain_cell(row, column)
        on = []
        for name in self.label_columns:
            value = plain_cell(row, name).lower()
            if value not in FLAGS:
                raise DataError(
                    f"{where}, column '{name}': {value[:40]!r} is not 0 or 1; each of data.label_columns "
                    "holds 1 (true, yes) where the label applies and 0 (false, no, empty) where it does not"
                )
            if FLAGS[value]:
                on.append(name)
        return self.separator.join(on)

    def encode(
        self, cells: Sequence[str], where: Callable[[int], str], names: list[str] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        self._check_separator(cells, where)
        sets = [split_cell(c, self.separator) for c in cells]
        found = sorted({label for s in sets for label in s})
        if not found:
            raise DataError(
                f"{where(0)}: no example has a label (data.label_separator: {self.separator!r}); "
                "a multi-label column holds each example's labels joined by the separator, e.g. "
                f"cat{self.separator}dog"
            )
        names = names if names is not None else list(self.label_columns) or found
        index = {n: i for i, n in enumerate(names)}
        out = np.zeros((len(sets), len(names)), dtype=np.float32)
        for i, s in enumerate(sets):
            for label in s:
                if label not in index:
                    raise DataError(
                        f"{where(i)}: the label {label!r} is not among the training labels ({', '.join(names)}); "
                        "a label the model never saw in training cannot be predicted"
                    )
                out[i, index[label]] = 1.0
        return out, names

    def _check_separator(self, cells: Sequence[str], where: Callable[[int], str]) -> None:
        """A separator that joins no cell while another one joins many reads every combination as
        a label of its own: refused, naming the one the file uses."""
        if len(cells) < 2 or any(self.separator in c for c in cells):
            return
        for other in (s for s in SEPARATORS if s != self.separator):
            joined = [i for i, c in enumerate(cells) if other in c.strip()]
            if len(joined) >= max(2, len(cells) // 10):
                raise DataError(
                    f"{where(joined[0])}: data.label_separator is {self.separator!r}, which joins no label cell, but "
                    f"{len(joined)} cells hold {other!r} (e.g. {cells[joined[0]].strip()[:60]!r}); set "
                    f"data.label_separator: {other!r} if that joins an example's labels"
                )

    def remap(self, labels: np.ndarray, names: list[str], onto: list[str], what: str) -> np.ndarray:
        index = {n: i for i, n in enumerate(onto)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise DataError(
                f"{what} has labels not in the training data: {', '.join(unknown)}; training labels: {', '.join(onto)}"
            )
        out = np.zeros((len(labels), len(onto)), dtype=np.float32)
        out[:, [index[n] for n in names]] = labels
        return out

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """Each example by its rarest label (examples with none together): the common approximation
        of stratifying several labels at once, which keeps every rare label in every split."""
        freq = labels.sum(0)
        rank = np.where(labels > 0, freq[None, :], np.inf)
        keys = np.where(np.isfinite(rank.min(1)), rank.argmin(1), labels.shape[1]).astype(np.int64)
        # a group too small to be in every split joins the examples without a label
        counts = np.bincount(keys, minlength=labels.shape[1] + 1)
        return np.where(counts[keys] < MIN_GROUP, labels.shape[1], keys)

    def check(self, labels: np.ndarray, names: list[str], source: str) -> None:
        never = [n for n, c in zip(names, labels.sum(0)) if c == 0]
        if never:
            raise DataError(f"{source}: the label(s) {', '.join(never)} occur on no training example; drop them or add examples")
        if len(names) < 2 and labels.all():
            raise DataError(f"{source}: every example has the one label {names[0]}; there is nothing to learn")

    def fit(self, labels: torch.Tensor, k: int, device: torch.device) -> None:
        pos = labels.float().sum(0)
        neg = len(labels) - pos
        self.prior = (pos / max(len(labels), 1)).clamp(1e-4, 1 - 1e-4)
        if self.weighting == "none" or (self.weighting == "auto" and bool((neg <= 1.5 * pos).all())):
            self.pos_weight = None
            return
        w = (neg / pos.clamp(min=1)).clamp(1.0, MAX_POS_WEIGHT)
        log.info(
            "positive weights (regularization.class_weight: %s): %s", self.weighting, ", ".join(f"{v:.2f}" for v in w.tolist())
        )
        self.pos_weight = w.to(device)

    def init_head(self, fc: nn.Module) -> None:
        """The last layer's bias at the logit of each label's training frequency: a new head then
        starts at the label priors (loss about 0.15 on 50 labels of a few percent each, where zero
        logits start at 0.69), as RetinaNet starts its classifier, instead of spending its first
        steps learning them (benchmarks/results/problems.md)."""
        bias = getattr(fc, "bias", None)
        if self.prior is not None and isinstance(bias, torch.Tensor) and bias.shape == self.prior.shape:
            with torch.no_grad():
                bias.copy_(torch.logit(self.prior).to(bias))

    def export_head(self) -> nn.Module:
        return nn.Sigmoid()

    def decoding(self, names: list[str]) -> dict[str, Any]:
        """Label i is predicted where sigmoid(logit i) >= thresholds[i], as ``predict`` decides."""
        return {
            "problem": self.name,
            "labels": list(names),
            "activation": "sigmoid",
            "thresholds": [float(t) for t in self._thresholds(len(names))],
            "decision": "probability >= threshold, per label",
        }

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs.float(), target.float(), pos_weight=self.pos_weight)

    def hits(self, outputs: torch.Tensor, target: torch.Tensor) -> int:
        return int(((outputs > 0) == (target > 0.5)).all(1).sum())

    def _thresholds(self, k: int) -> np.ndarray:
        return self.thresholds if self.thresholds is not None and len(self.thresholds) == k else np.full(k, 0.5)

    def metrics(self, outputs: torch.Tensor, target: torch.Tensor, names: list[str], *, detailed: bool = False) -> dict[str, Any]:
        from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support

        y = target.numpy().astype(np.int64)
        p = torch.sigmoid(outputs.float()).numpy()
        pred = (p >= self._thresholds(len(names))).astype(np.int64)
        present = y.sum(0) > 0
        out: dict[str, Any] = {
            "loss": float(F.binary_cross_entropy_with_logits(outputs.float(), target.float())),
            "map": float(average_precision_score(y[:, present], p[:, present], average="macro"))
            if present.any()
            else float("nan"),
            "micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
            "subset_accuracy": float((pred == y).all(1).mean()) if len(y) else float("nan"),
        }
        if detailed:
            prec, rec, f, s = precision_recall_fscore_support(y, pred, zero_division=0)
            ap = [float(average_precision_score(y[:, i], p[:, i])) if present[i] else float("nan") for i in range(len(names))]
            thr = self._thresholds(len(names))
            out["per_label"] = {
                n: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f[i]), "ap": ap[i],
                    "threshold": float(thr[i]), "support": int(s[i])}
                for i, n in enumerate(names)
            }  # fmt: skip
            out["n"] = len(y)
        return out

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        return torch.sigmoid(outputs.float()).numpy()

    def tune(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        """The decision thresholds, chosen on the validation outputs (:func:`choose_thresholds`)."""
        self.thresholds = choose_thresholds(self.decode(outputs), target.numpy() > 0.5)
        return {"thresholds": self.thresholds.round(4).tolist()}

    def state(self) -> dict[str, Any]:
        return {"separator": self.separator, "thresholds": None if self.thresholds is None else self.thresholds.tolist()}

    def load(self, state: dict[str, Any]) -> None:
        thresholds = state.get("thresholds")
        self.thresholds = None if thresholds is None else np.asarray(thresholds, dtype=np.float64)

    def counts(self, labels: np.ndarray, k: int) -> list[float]:
        return labels.sum(0).astype(int).tolist() if len(labels) else [0] * k

    def constant_outputs(self, targets: np.ndarray, k: int) -> torch.Tensor:
        """Each label at its training frequency: at threshold 0.5 the labels on over half the examples."""
        return _logit(targets.mean(0, keepdims=True))

    def fit_linear(self, z: Any, targets: np.ndarray, k: int, logistic: Logistic) -> Callable[[Any], torch.Tensor]:
        """One-vs-rest class-balanced logistic regressions at C = BASELINE_C (a label that is on every
        example or on none keeps its frequency); the label probabilities as logits."""
        models = [_one_label(z, column) for column in targets.T]
        return lambda e: _logit(np.column_stack([m(e) for m in models]))

    def predictions(self, decoded: np.ndarray, names: list[str], top: int) -> list[dict[str, Any]]:
        thr = self._thresholds(len(names))
        out = []
        for p in decoded:
            order = np.argsort(-p)
            out.append(
                {"labels": [names[j] for j in order if p[j] >= thr[j]], "top": [(names[j], float(p[j])) for j in order[:top]]}
            )
        return out


def _logit(p: np.ndarray) -> torch.Tensor:
    """Probabilities as logits, whose sigmoid gives them back."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return torch.from_numpy(np.log(p / (1 - p))).float()


def _one_label(z: Any, y: np.ndarray) -> Callable[[Any], np.ndarray]:
    """A balanced logistic regression of one label: a function from features to its probability."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():
        return lambda e: np.full(e.shape[0], float(y[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=BASELINE_C, class_weight="balanced", max_iter=100, tol=1e-3)
        model.fit(z, y.astype(np.int64))
    return lambda e: model.predict_proba(e)[:, 1]
