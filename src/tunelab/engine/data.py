"""What the engine knows of data: labelled sets it can index, count and join, and the splits of a
run. Each task's sets (images, texts) provide this much; the rest is theirs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import torch

from tunelab.objectives import Objective


class LabelledSet(Protocol):
    labels: torch.Tensor  # the targets (tunelab.objectives): int64 [N] classes, float32 [N, K] or [N]
    items: list[str]  # where each example came from, for reports and errors

    def __len__(self) -> int: ...

    @property
    def inputs(self) -> Any:
        """What the model takes, indexable by a tensor of rows (images, tokens)."""
        ...

    def concat(self, other: Any) -> Any:
        """This set followed by ``other`` (a refit trains on training and validation examples)."""
        ...


S = TypeVar("S", bound=LabelledSet)


@dataclass
class Splits(Generic[S]):
    classes: list[str]
    train: S
    val: S | None
    test: S | None
    skipped: list[str] = field(default_factory=list)

    def count_table(self, objective: Objective) -> str:
        """Per-class counts of every split (positives per label; a regression's mean target),
        printed at the start of a run."""
        sets = [(n, s) for n, s in (("train", self.train), ("val", self.val), ("test", self.test)) if s is not None]
        counts = {n: objective.counts(s.labels.numpy(), len(self.classes)) for n, s in sets}
        head = objective.examples
        w = max(len(c) for c in [*self.classes, head])
        lines = [f"{head:<{w}}" + "".join(f"  {n:>7}" for n, _ in sets)]
        for i, c in enumerate(self.classes):
            lines.append(f"{c:<{w}}" + "".join(f"  {counts[n][i]:>7g}" for n, _ in sets))
        lines.append(f"{'total':<{w}}" + "".join(f"  {len(s):>7}" for _, s in sets))
        return "\n".join(lines)

    def summary(self, objective: Objective) -> dict[str, Any]:
        """Classes and per-class counts of each split, as RUN_DIR/data.json holds them."""
        counts = {
            name: objective.counts(s.labels.numpy(), len(self.classes))
            for name, s in (("train", self.train), ("val", self.val), ("test", self.test))
            if s is not None
        }
        return {"classes": self.classes, "counts": counts, "skipped": self.skipped, "problem": objective.name}
