"""One objective per problem type: what the head outputs, its loss, how targets are read and
encoded, how outputs are decoded, and the metrics with one declared primary metric.

The engine, the data readers, the report and the search read only what an objective declares;
none of them asks which problem a run solves. A new problem type is one module here with a class
that satisfies :class:`Objective` and one line in ``OBJECTIVES``.

    objective = objective_for("multi_label")
    targets, names = objective.encode(cells, where)       # "cat|dog" -> multi-hot rows
    loss = objective.loss(outputs, targets_of_the_batch)
    objective.metrics(outputs, targets, names)["map"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch
from torch import nn

from tunelab.errors import ConfigError

if TYPE_CHECKING:
    from tunelab.config import Config, DataConfig


Logistic = Callable[[Any, np.ndarray], Any]
"""``logistic(z, classes)``: a class-balanced logistic regression fitted on features ``z``, C by
cross-validation (:func:`tunelab.engine.probe.fit_logistic` with the caller's seed and solver budget)."""


@dataclass(frozen=True)
class BaselineNames:
    """The names of a problem type's cheap baselines (:mod:`tunelab.baselines` fits and scores them)."""

    constant: str  # the predictor that ignores the input: "majority", "mean"
    model: str  # the linear model on the raw inputs, named "<model>_<kind>": "logreg_pixels", "ridge_tfidf"
    probe: str  # the same model on the pretrained backbone's pooled features: "linear_probe", "ridge_probe"


class Objective(Protocol):
    """What a problem type declares. ``labels`` of a data set are its encoded targets: class indices
    int64 [N] (single label), multi-hot float32 [N, K] (multi-label) or float32 [N] (regression);
    ``names`` the names of the model's outputs (classes, labels, the target)."""

    name: ClassVar[str]
    primary: ClassVar[str]  # the metric the run is judged by (diagnosis, best checkpoint, baselines, tune)
    reported: ClassVar[tuple[str, ...]]  # the metrics besides the loss, the primary first (config.PROBLEM_METRICS)
    minimize: ClassVar[frozenset[str]]  # metrics where lower is better ("loss" always)
    train_metric: ClassVar[str | None]  # the per-batch score training reports as train_<name>, if any
    # one class per example, scored by a softmax: what the patterns built on class probabilities ask
    # (the probe that picks learning rates, the lexical blend, few-shot pairs, distillation)
    exclusive: ClassVar[bool]
    examples: ClassVar[str]  # what a name counts in tables: "class", "label", "target"
    baselines: ClassVar[BaselineNames]
    # what an export outputs: the head's own outputs ("logits", "values") in the formats that end in
    # one linear layer (timm, transformers), and after export_head() in the graphs (ONNX, TorchScript)
    outputs: ClassVar[str]
    exported: ClassVar[str]
    problem_type: ClassVar[str]  # the name transformers' config.problem_type (and the Hub) gives the problem

    hub_tag: ClassVar[str | None]  # the Hub's tag of the problem beside the pipeline tag (none for plain classification)
    baseline_summary: ClassVar[str]  # the baselines a run scores, in words (the model card)
    data_head: ClassVar[str]  # the first column of the report's data table
    imbalance: ClassVar[str | None]  # the report's imbalance warning ({ratio}), where counts have one

    def configure(self, options: dict[str, Any]) -> None:
        """The options of the run (class weighting, label smoothing, separator) before anything is read."""

    def columns(self, column: str) -> list[str]:
        """The columns a row's target is read from: the label column, or several 0/1 columns."""
        ...

    def cell(self, row: Mapping[str, Any], column: str, where: str) -> str:
        """A row's label cell as text (several 0/1 columns become their names, joined)."""
        ...

    def encode(
        self, cells: Sequence[str], where: Callable[[int], str], names: list[str] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        """Targets of the raw label cells (``where(i)`` names row ``i`` in an error); ``names`` the
        training names a test set must use (None: the names found, sorted)."""
        ...

    def remap(self, labels: np.ndarray, names: list[str], onto: list[str], what: str) -> np.ndarray:
        """Targets encoded against ``names`` expressed against the training ``onto`` names."""
        ...

    def strata(self, labels: np.ndarray) -> np.ndarray:
        """An int64 key per example that stratified splits and per-class caps group by."""
        ...

    def split_groups(self, labels: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
        """The groups stratified splits keep in proportion, and their names for messages: the
        classes themselves, or numbered groups of ``strata``."""
        ...

    def unprobed(self) -> str | None:
        """Why the linear probe on the pretrained features (a classifier of one class per example)
        does not apply to this problem type, in words; None where it does."""
        ...

    def check(self, labels: np.ndarray, names: list[str], source: str) -> None:
        """Refuse training targets the objective cannot learn from (one class, a label never seen)."""
        ...

    def fit(self, labels: torch.Tensor, k: int, device: torch.device) -> None:
        """What the objective learns from the training targets (class weights, target scale)."""
        ...

    def output_layer(self) -> nn.Module:
        """What the head applies after its last linear layer (a fixed rescaling, or nothing)."""
        ...

    def export_head(self) -> nn.Module:
        """What an ONNX or TorchScript export applies to the model's outputs (a sigmoid per label, or
        nothing), so that the file gives ``exported`` without tunelab."""
        ...

    def fold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's last linear layer with ``output_layer()`` folded in: the one linear layer the
        timm and transformers formats end in gives the model's outputs."""
        ...

    def decoding(self, names: list[str]) -> dict[str, Any]:
        """What an exported model carries for a user to read its outputs as ``predict`` does: the
        problem type, the names of the outputs, the decision rule (thresholds) and ``activation``,
        the function that turns the head's outputs into scores ("softmax", "sigmoid", "none")."""
        ...

    def init_head(self, fc: nn.Module) -> None:
        """Set a new head's last linear layer from what ``fit`` learned (multi-label: the label priors)."""
        ...

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor: ...

    def hits(self, outputs: torch.Tensor, target: torch.Tensor) -> int:
        """Examples of the batch scored right by ``train_metric`` (0 when there is none)."""
        ...

    def metrics(self, outputs: torch.Tensor, target: torch.Tensor, names: list[str], *, detailed: bool = False) -> dict[str, Any]:
        """``loss``, the primary metric and the others (``detailed``: per-name rows and ``n``)."""
        ...

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        """What a user reads: class probabilities, label probabilities or values."""
        ...

    def tune(self, outputs: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
        """Decision settings chosen on validation outputs (per-label thresholds); {} when none."""
        ...

    def state(self) -> dict[str, Any]:
        """What a finished run keeps to decode as it did (RUN_DIR/objective.json)."""
        ...

    def load(self, state: dict[str, Any]) -> None: ...

    def counts(self, labels: np.ndarray, k: int) -> list[float]:
        """A per-name figure of a split for the data table: examples per class or label, or the
        mean of the target."""
        ...

    def constant_outputs(self, targets: np.ndarray, k: int) -> torch.Tensor:
        """Outputs [1, width] of the baseline that ignores the input, learnt from the training
        ``targets`` of ``k`` names (the majority class, each label's frequency, the mean)."""
        ...

    def fit_linear(self, z: Any, targets: np.ndarray, k: int, logistic: Logistic) -> Callable[[Any], torch.Tensor]:
        """The problem type's linear baseline fitted on features ``z`` [N, D] and ``targets``: a
        function from features to outputs [M, width], read by :meth:`metrics` as the head's."""
        ...

    def predictions(self, decoded: np.ndarray, names: list[str], top: int) -> list[dict[str, Any]]:
        """Each example's prediction as a user reads it: ``top``, (name, score) pairs, best first (the
        top classes, the labels predicted); ``labels`` the label set, ``value`` the value, where
        the problem has them."""
        ...


def _registry() -> dict[str, Callable[[], Objective]]:
    from tunelab.objectives.multi_label import MultiLabel
    from tunelab.objectives.regression import Regression
    from tunelab.objectives.single_label import SingleLabel

    return {"single_label": SingleLabel, "multi_label": MultiLabel, "regression": Regression}


def objective_names() -> list[str]:
    return list(_registry())


def objective_for(problem: str, options: dict[str, Any] | None = None) -> Objective:
    """A fresh objective of the problem type ``problem`` (``data.problem``), configured with ``options``."""
    registry = _registry()
    if problem not in registry:
        raise ConfigError(f"data.problem: {problem!r} is not a problem type; valid: {', '.join(registry)}")
    objective = registry[problem]()
    objective.configure(options or {})
    return objective


def objective_of(cfg: Config) -> Objective:
    """The objective of a run's config, configured from its data and regularization sections."""
    reg = cfg.regularization
    return objective_for(
        cfg.data.problem, _data_options(cfg.data) | {"class_weight": reg.class_weight, "label_smoothing": reg.label_smoothing}
    )


def data_objective(d: DataConfig) -> Objective:
    """The objective as the data readers need it: how label cells are read and splits stratified."""
    return objective_for(d.problem, _data_options(d))


def _data_options(d: DataConfig) -> dict[str, Any]:
    return {
        "label_columns": d.label_columns,
        "label_separator": d.label_separator,
        "regression_loss": d.regression_loss,
        "target_name": d.target_column(),
    }


def metric_of(cfg: Config) -> str:
    """The validation metric a search judges trials by: ``tune.metric``, or for ``auto`` the primary
    metric of the run's problem type."""
    chosen = cfg.tune.metric if cfg.tune is not None else "auto"
    return f"val_{objective_of(cfg).primary}" if chosen == "auto" else chosen


def better(objective: Objective, metric: str) -> str:
    """'min' or 'max': the direction in which ``metric`` (maybe ``val_``/``train_`` prefixed) improves."""
    bare = metric.removeprefix("val_").removeprefix("train_")
    return "min" if bare == "loss" or bare in objective.minimize else "max"


def counted(objective: Objective, n: int) -> str:
    """``n`` of what the objective's outputs name, in words: 1 class, 3 classes, 50 labels."""
    word = objective.examples
    return f"{n} {word if n == 1 else word + ('es' if word.endswith('s') else 's')}"


def label_text(label: np.ndarray | int | float, names: list[str]) -> str:
    """One example's target as a user wrote it: a class, labels joined by |, or a value."""
    value = np.asarray(label)
    if value.ndim == 1:
        return "|".join(n for n, v in zip(names, value) if v > 0.5) or "(no label)"
    if np.issubdtype(value.dtype, np.integer):
        return names[int(value)] if 0 <= int(value) < len(names) else str(int(value))
    return f"{float(value):g}"
