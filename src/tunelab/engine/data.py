"""What the engine knows of data: labelled sets it can index, count and join, and the splits of a
run. Each task's sets (images, texts) provide this much; the rest is theirs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch


class LabelledSet(Protocol):
    labels: torch.Tensor  # int64 [N]
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

    def count_table(self) -> str:
        """Per-class counts of every split, printed at the start of a run."""
        sets = [(n, s) for n, s in (("train", self.train), ("val", self.val), ("test", self.test)) if s is not None]
        counts = {n: np.bincount(s.labels.numpy(), minlength=len(self.classes)) for n, s in sets}
        w = max(len(c) for c in [*self.classes, "class"])
        lines = [f"{'class':<{w}}" + "".join(f"  {n:>7}" for n, _ in sets)]
        for i, c in enumerate(self.classes):
            lines.append(f"{c:<{w}}" + "".join(f"  {counts[n][i]:>7}" for n, _ in sets))
        lines.append(f"{'total':<{w}}" + "".join(f"  {len(s):>7}" for _, s in sets))
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """Classes and per-class counts of each split, as RUN_DIR/data.json holds them."""
        counts = {
            name: np.bincount(s.labels.numpy(), minlength=len(self.classes)).tolist()
            for name, s in (("train", self.train), ("val", self.val), ("test", self.test))
            if s is not None
        }
        return {"classes": self.classes, "counts": counts, "skipped": self.skipped}
