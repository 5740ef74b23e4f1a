"""``regularization: auto``: strengths chosen from the data size, by a documented table.

The fewer training images per class, the stronger the pull toward the pretrained weights, the
more dropout and augmentation, and the fewer blocks worth unfreezing. Only what the config leaves
unset is filled in; the choices are printed and saved in the run's resolved config.

| images per class | L2-SP strength | head dropout | augment | unfrozen in stage 2 | epochs (head, fine-tune) |
|---|---|---|---|---|---|
| up to 10         | 1.0            | 0.5          | flip    | all                 | 8, 12                    |
| 11 to 50         | 0.3            | 0.3          | flip    | all                 | 8, 12                    |
| 51 to 500        | 0.1            | 0.2          | light   | all                 | 6, 10                    |
| over 500         | 0.01           | 0.1          | medium  | all                 | 4, 8                     |

L2-SP is what makes unfreezing the whole backbone safe on little data: the pull toward the
pretrained weights keeps what the features knew, so every layer may adapt a little. Measured on
Fashion-MNIST with 10 images per class while choosing the table (mean test accuracy over seeds
0-2): the two-stage recipe with the last 6 blocks in stage 2 (the default then) without
regularization 0.722; L2-SP 1.0 on those blocks 0.729
(seeds 0-1); L2-SP 1.0 with all blocks 0.736; plus head dropout 0.5 and flips 0.740. The committed
grid is in benchmarks/results/regularization.md.

With many classes (over 100) the epochs drop by a third: each epoch already has many steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tunelab.config import Config, PenaltyConfig, StageConfig


@dataclass(frozen=True)
class AutoRow:
    max_per_class: float
    l2sp: float
    dropout: float
    augment: str
    last_blocks: int | None  # None: the whole backbone
    epochs: tuple[int, int]


TABLE = [
    AutoRow(10, 1.0, 0.5, "flip", None, (8, 12)),
    AutoRow(50, 0.3, 0.3, "flip", None, (8, 12)),
    AutoRow(500, 0.1, 0.2, "light", None, (6, 10)),
    AutoRow(float("inf"), 0.01, 0.1, "medium", None, (4, 8)),
]


def choose(per_class: float, num_classes: int) -> AutoRow:
    row = next(r for r in TABLE if per_class <= r.max_per_class)
    if num_classes > 100:
        row = AutoRow(
            row.max_per_class,
            row.l2sp,
            row.dropout,
            row.augment,
            row.last_blocks,
            (max(2, row.epochs[0] * 2 // 3), max(2, row.epochs[1] * 2 // 3)),
        )
    return row


def apply_auto(cfg: Config, per_class: float, num_classes: int) -> tuple[Config, dict[str, Any]]:
    """A copy of ``cfg`` with what auto chooses filled into the fields the user left unset."""
    row = choose(per_class, num_classes)
    out = cfg.model_copy(deep=True)
    chosen: dict[str, Any] = {}
    reg = out.regularization
    if "penalties" not in cfg.regularization.model_fields_set:
        reg.penalties = [PenaltyConfig(type="l2sp", strength=row.l2sp, layers=["all"], params="all")]
        chosen["regularization.penalties"] = f"l2sp strength {row.l2sp:g} (head {row.l2sp / 10:g})"
    if "augment" not in cfg.regularization.model_fields_set:
        reg.augment = row.augment  # type: ignore[assignment]  # the table holds preset names
        chosen["regularization.augment"] = row.augment
    if "dropout" not in cfg.model.head.model_fields_set:
        out.model.head.dropout = row.dropout
        chosen["model.head.dropout"] = row.dropout
    if "stages" not in cfg.model_fields_set:
        train: list[Any] = ["head", {"last_blocks": row.last_blocks}] if row.last_blocks is not None else ["all"]
        first = out.stages[0]
        out.stages = [
            first.model_copy(update={"epochs": row.epochs[0]}),
            StageConfig(name="finetune", train=train, epochs=row.epochs[1], lr_scale=0.1, schedule="cosine", warmup_epochs=1),
        ]
        chosen["stages"] = f"head {row.epochs[0]} epochs, then {train} {row.epochs[1]} epochs at lr x0.1"
    return out, chosen


def apply_min_steps(cfg: Config, n_train: int) -> tuple[Config, dict[str, Any]]:
    """A copy of ``cfg`` whose stages with ``min_steps`` run enough epochs for that many optimizer
    steps on ``n_train`` training examples. A recipe counted in epochs takes 1-2 steps an epoch on
    a few-shot set (40 images, batch 32), too few for the head to learn at all."""
    steps_per_epoch = max(1, math.ceil(n_train / cfg.data.batch_size))
    out = cfg.model_copy(deep=True)
    chosen: dict[str, Any] = {}
    for i, st in enumerate(out.stages):
        if st.min_steps is None or st.epochs == 0:
            continue
        need = math.ceil(st.min_steps / steps_per_epoch)
        if need > st.epochs:
            chosen[f"stages.{i}.epochs"] = (
                f"{need} (min_steps {st.min_steps} at {steps_per_epoch} steps an epoch; the recipe says {st.epochs})"
            )
            out.stages[i].epochs = need
    return out, chosen
