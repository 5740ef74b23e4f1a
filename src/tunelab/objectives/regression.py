"""Regression: one number per example (a quality score, an age, a severity). Targets are
standardised for training by a fixed layer at the end of the head (so the network learns values
of unit scale whatever the target's units, and every output a user sees, from ``predict`` to an
ONNX export, is in the target's own units); mean squared error or Huber loss in standardised
units; R^2 as the primary metric, MAE, RMSE and Spearman's rank correlation beside it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tunelab.errors import DataError
from tunelab.objectives import BaselineNames, Logistic
from tunelab.objectives._base import BaseObjective

# the ridge penalties the baselines choose from by leave-one-out cross-validation (exact and cheap
# for ridge): from TF-IDF rows of unit length to thousands of standardised pixels
ALPHAS = np.logspace(-3, 5, 17)
BINS = 5  # quantile bins that stratified splits keep the target's distribution by


class Rescale(nn.Module):
    """``x * scale + shift``: standardised outputs back in the target's units (buffers, so they
    travel with the weights into checkpoints and exports and are never trained)."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, shift: float = 0.0, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([shift]))
        self.register_buffer("scale", torch.tensor([scale]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def parse_number(cell: str, where: str) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise DataError(
            f"{where}: the target {cell.strip()[:40]!r} is not a number; a regression target is a number such as 3.5"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{where}: the target is {cell.strip()}; a regression target is a finite number (drop or fill the row)")
    return value


class Regression(BaseObjective):
    name: ClassVar[str] = "regression"
    primary: ClassVar[str] = "r2"
    reported: ClassVar[tuple[str, ...]] = ("r2", "mae", "rmse", "spearman")
    minimize: ClassVar[frozenset[str]] = frozenset({"mae", "rmse"})
    train_metric: ClassVar[str | None] = None
    exclusive: ClassVar[bool] = False
    examples: ClassVar[str] = "target"
    baselines: ClassVar[BaselineNames] = BaselineNames("mean", "ridge", "ridge_probe")
    outputs: ClassVar[str] = "values"  # the head ends in Rescale: values in the target's units
    exported: ClassVar[str] = "values"
    problem_type: ClassVar[str] = "regression"

    # what the report and the model card say of the problem type
    hub_tag: ClassVar[str | None] = "regression"  # the Hub's tag beside the pipeline tag
    baseline_summary: ClassVar[str] = (
        "the training mean; ridge regression on the raw inputs; the ridge probe on the pretrained features"
    )
    data_head: ClassVar[str] = "target (mean)"  # the first column of the data table
    imbalance: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.kind, self.target = "mse", "value"
        self.mean, self.std = 0.0, 1.0

    def configure(self, options: dict[str, Any]) -> None:
        self.kind = options.get("regression_loss", "mse")
        self.target = options.get("target_name", "value")

    def encode(
        self, cells: Sequence[str], where: Callable[[int], str], names: list[str] | None = None
    ) -> tuple[np.ndarray, list[str]]:
        values = np.asarray([parse_number(c, where(i)) for i, c in enumerate(cells)], dtype=np.float32)
        return values, names if names is not None else [self.target]

    def remap(self, labels: np.ndarray, names: list[str], onto: list[str], what: str) -> np.ndarray:
        return labels

    def strata(self, labels: np.ndarray) -> np.ndarray:
        if len(labels) < 2 * BINS:
            return np.zeros(len(labels), dtype=np.int64)
        edges = np.quantile(labels, np.linspace(0, 1, BINS + 1)[1:-1])
        return np.searchsorted(edges, labels, side="right").astype(np.int64)

    def check(self, labels: np.ndarray, names: list[str], source: str) -> None:
        if len(np.unique(labels)) < 2:
            raise DataError(
                f"{source}: every target is {labels[0] if len(labels) else 'missing'}; a regression needs targets that vary"
            )

    def fit(self, labels: torch.Tensor, k: int, device: torch.device) -> None:
        y = labels.double()
        self.mean, self.std = float(y.mean()), float(y.std()) if len(y) > 1 and float(y.std()) > 0 else 1.0

    def output_layer(self) -> nn.Module:
        return Rescale(self.mean, self.std)

    def fold(self, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x @ w.T + b) * std + mean`` as one linear layer: ``w * std``, ``b * std + mean``."""
        return weight * self.std, bias * self.std + self.mean

    def decoding(self, names: list[str]) -> dict[str, Any]:
        return {"problem": self.name, "target": names[0] if names else self.target, "activation": "none"}

    def _standard(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float().reshape(len(x), -1)[:, 0] - self.mean) / self.std

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fn = F.huber_loss if self.kind == "huber" else F.mse_loss
        return fn(self._standard(outputs), self._standard(target))

    def hits(self, outputs: torch.Tensor, target: torch.Tensor) -> int:
        return 0

    def metrics(self, outputs: torch.Tensor, target: torch.Tensor, names: list[str], *, detailed: bool = False) -> dict[str, Any]:
        from scipy.stats import spearmanr
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        y, v = target.double().numpy().reshape(-1), outputs.double().numpy()[:, 0]
        out: dict[str, Any] = {
            "loss": float(self.loss(outputs, target)),
            "r2": float(r2_score(y, v)) if len(y) > 1 else float("nan"),
            "mae": float(mean_absolute_error(y, v)),
            "rmse": float(math.sqrt(mean_squared_error(y, v))),
            "spearman": float(spearmanr(y, v).statistic) if len(y) > 2 and np.ptp(v) > 0 else float("nan"),
        }
        if detailed:
            out["n"] = len(y)
            out["target"] = {"mean": float(y.mean()), "std": float(y.std()), "min": float(y.min()), "max": float(y.max())}
        return out

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        return outputs.float().numpy()[:, :1]

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "loss": self.kind}

    def load(self, state: dict[str, Any]) -> None:
        self.mean, self.std = float(state.get("mean", 0.0)), float(state.get("std", 1.0))

    def counts(self, labels: np.ndarray, k: int) -> list[float]:
        return [round(float(labels.mean()), 4)] if len(labels) else [float("nan")]

    def constant_outputs(self, targets: np.ndarray, k: int) -> torch.Tensor:
        """The training mean."""
        return torch.tensor([[float(np.mean(targets, dtype=np.float64))]])

    def fit_linear(self, z: Any, targets: np.ndarray, k: int, logistic: Logistic) -> Callable[[Any], torch.Tensor]:
        """Ridge regression, its penalty by leave-one-out cross-validation over ALPHAS."""
        from sklearn.linear_model import RidgeCV

        model = RidgeCV(alphas=ALPHAS).fit(z, targets.astype(np.float64))
        return lambda e: torch.from_numpy(np.asarray(model.predict(e), dtype=np.float64)).reshape(-1, 1)

    def predictions(self, decoded: np.ndarray, names: list[str], top: int) -> list[dict[str, Any]]:
        return [{"value": float(v[0]), "top": [(names[0], float(v[0]))]} for v in decoded]
