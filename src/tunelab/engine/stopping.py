"""Early stopping within a stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.config import StageConfig


@dataclass
class Stopper:
    """Tracks the best value of a validation metric within a stage."""

    metric: str
    mode: str  # "min" or "max"
    patience: int | None
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value``; True when it is a new best."""
        better = self.best is None or (value < self.best - self.min_delta if self.mode == "min"
                                       else value > self.best + self.min_delta)
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load(self, st: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = st["best"], st["best_epoch"], st["bad_epochs"]


def make_stopper(stage: StageConfig) -> Stopper:
    es = stage.early_stopping
    metric = es.metric if es else "val_loss"
    return Stopper(metric, "min" if metric == "val_loss" else "max", es.patience if es else None,
                   es.min_delta if es else 0.0)
