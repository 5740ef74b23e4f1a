"""Refit on all the training data: after a run has used its validation split to decide (epochs,
early stopping, the diagnosis), train the same recipe again on the training and validation
examples together and keep that model, as AutoML tools do ("refit_full").

With 20 images per class, ``val_split: 0.2`` trains on 16; the refit trains on all 20. The
validation metrics and the diagnosis stay those of the first fit (the only estimate made on data
the model did not train on); the test metrics are the refit model's.
"""

from __future__ import annotations

from typing import Any

from tunelab.config import Config, StageConfig

# refit: auto (the default) refits when training + validation hold at most this many examples a
# class. On the benchmark suite the refit gained at 5-8 examples a class on all three such tasks
# (fashion-mnist-5 +2.2, textures-grey-5 +4.5, sotu-era-8 +5.1 points, 3 seeds each) and nothing
# worth a second training at 20 or more (+0.1 on average over 8 tasks), at about twice the training time
# (benchmarks/results/suite.md): holding out a fifth of 5 examples is a fifth of the data.
REFIT_AUTO_PER_CLASS = 10


def should_refit(cfg: Config, n_train: int, n_val: int, num_classes: int) -> bool:
    mode = cfg.data.refit
    if n_val == 0 or mode == "never":
        return False
    return mode == "always" or n_train + n_val <= REFIT_AUTO_PER_CLASS * max(num_classes, 1)


def refit_stages(cfg: Config, history: list[dict[str, Any]]) -> list[StageConfig]:
    """The stages as the first fit ran them: each for the epochs it trained (up to the epoch early
    stopping restored), with no early stopping (there is no validation split any more)."""
    out = []
    for i, st in enumerate(cfg.stages):
        rows = [r for r in history if r["stage"] == i]
        epochs = len(rows)
        es = st.early_stopping
        if es is not None and es.restore_best and rows and all(r.get(es.metric) is not None for r in rows):
            vals = [r[es.metric] for r in rows]
            pick = min if es.metric == "val_loss" else max
            epochs = pick(range(len(vals)), key=lambda k: vals[k]) + 1
        out.append(st.model_copy(update={"epochs": epochs, "early_stopping": None, "min_steps": None}))
    return out
