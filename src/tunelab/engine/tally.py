"""What one training epoch adds up as it runs: the loss and penalty terms weighted by examples, the
hits, the examples seen and labelled, and the learning rate of every step; shown on a progress bar,
then summed over the ranks into the epoch's row of metrics.jsonl."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm

from tunelab.distributed import Dist


class EpochTally:
    """The running sums of one epoch over its batches (``steps``: each batch's first position in the
    epoch's order), with a progress bar titled ``desc`` where ``show``."""

    def __init__(self, penalty_names: list[str], steps: range, desc: str, show: bool, metric: str | None = "accuracy") -> None:
        self.metric = metric  # the objective's per-batch score (train_accuracy), None where it has none
        self.sums = dict.fromkeys(["loss", "hits", "seen", "labelled"] + [f"penalty_{n}" for n in penalty_names], 0.0)
        self.lrs: list[float] = []  # every step's learning rate, for the plot
        self.t0 = time.perf_counter()
        self.bar = tqdm(steps, desc=desc, disable=None if show else True, leave=False, file=sys.stderr, unit="batch")

    def __iter__(self) -> Iterator[int]:
        return iter(self.bar)

    def add(self, terms: dict[str, float], n: int, hits: int, labelled: int, total: float) -> None:
        """One step: its loss terms (means over its ``n`` examples), its hits among its ``labelled``
        examples, and its whole loss ``total`` for the bar."""
        for k, v in terms.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n
        self.sums["hits"] += hits
        self.sums["seen"] += n
        self.sums["labelled"] += labelled
        self.bar.set_postfix(loss=f"{total:.4f}", img_s=f"{self.sums['seen'] / (time.perf_counter() - self.t0):.0f}")

    def row(self, dist: Dist, lr: float) -> dict[str, Any]:
        """The epoch's training columns, summed over all ranks; ``lr``: the rate after its last step."""
        secs = time.perf_counter() - self.t0
        totals = dict(zip(self.sums, dist.sum(list(self.sums.values()))))
        row: dict[str, Any] = {"train_loss": totals["loss"] / totals["seen"]}
        if self.metric is not None:
            row[f"train_{self.metric}"] = totals["hits"] / max(totals["labelled"], 1)
        row |= {
            "seconds": secs,
            "img_per_s": totals["seen"] / secs,
            "lr": lr,
            "train_count": int(totals["seen"]),
        }
        row.update({k: v / totals["seen"] for k, v in totals.items() if k.startswith("penalty_")})
        row["lr_steps"] = self.lrs[:: max(1, len(self.lrs) // 50)]  # for the learning-rate plot
        return row
