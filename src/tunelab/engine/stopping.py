"""Early stopping within a stage, and the stop at a loss that is no longer a number."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.config import Config, StageConfig
from tunelab.errors import TrainingError
from tunelab.objectives import Objective, better
from tunelab.run_folder import RunFolder


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
        better = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def stopped_line(self, si: int) -> str:
        """The log line of stage ``si`` stopped early."""
        return (
            f"early stopping in stage {si + 1}: {self.metric} did not improve for {self.patience} epochs "
            f"(best {self.best:.4f} at epoch {self.best_epoch + 1})"
        )

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load(self, st: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = st["best"], st["best_epoch"], st["bad_epochs"]


def make_stopper(stage: StageConfig, objective: Objective) -> Stopper:
    es = stage.early_stopping
    metric = es.metric if es else "val_loss"
    return Stopper(metric, better(objective, metric), es.patience if es else None, es.min_delta if es else 0.0)


def diverged(cfg: Config, run_dir: Path, si: int, epoch: int, step: int, loss: float, lr: float) -> TrainingError:
    """The error that ends a run at its first inf/nan training loss: every later step would be nan
    too (`lr: 1e30` trained 80 epochs of NaN and exited 0). The step's update is never saved: the
    checkpoint on disk is the last finished epoch's."""
    stage, base = cfg.stages[si], cfg.stage_lrs()[si]
    saved = RunFolder(run_dir).resumable()
    return TrainingError(
        f"stage {si + 1}/{len(cfg.stages)} '{stage.name or si}', epoch {epoch + 1}, step {step + 1}: the training loss is "
        f"{loss} at learning rate {lr:.3g} (stage rate {base:.3g}): training diverged, and every later step would be nan "
        f"too. Lower that stage's learning rate (e.g. 10x: --set stages.{si}.lr={base / 10:.3g}) and start a new run. "
        + (
            f"{run_dir}/checkpoints keeps the run as it was at the end of its last finished epoch"
            if saved
            else "It diverged before its first epoch ended; nothing was saved"
        )
    )
