"""The default text recipe on few-shot data: SetFit's idea as tunelab stages.

With a few dozen labelled texts a class, fine-tuning the whole encoder on cross-entropy (the
default text recipe) has little to learn from; pairs have more: 20 texts a class make 780 pairs.
So when the config keeps the default recipe's stages and the data has at most
:data:`FEW_SHOT_PER_CLASS` labelled texts a class (training and validation together), the run
trains a contrastive stage on the encoder, then the head on the tuned encoder's cached features,
and refits both on all the labelled texts (``data.refit: auto`` becomes ``always``: at 20 a class
the held-out fifth is 4 texts a class). The choice is logged and written into config.yaml, so a
resumed run keeps it. Chosen on the benchmark suite (benchmarks/results/suite_text_screen.md).
"""

from __future__ import annotations

import logging
from typing import Any

from tunelab.config import Config, StageConfig
from tunelab.objectives import objective_of
from tunelab.tasks import task_for

FEW_SHOT_PER_CLASS = 20


def few_shot_stages() -> list[StageConfig]:
    return [
        StageConfig(
            name="pairs",
            objective="contrastive",
            train=["all"],
            epochs=1,
            lr=2e-5,
            schedule="cosine",
            warmup_epochs=0.1,
            min_steps=50,
        ),
        StageConfig(name="head", train=["head"], epochs=10, lr=3e-3, schedule="cosine", min_steps=50),
    ]


log = logging.getLogger("tunelab")


def wanted(cfg: Config, per_class: float) -> bool:
    """A text run on the default recipe's own stages with at most FEW_SHOT_PER_CLASS texts a class."""
    return (
        task_for(cfg).few_shot
        and cfg.recipe == "default"
        and "stages" not in cfg.model_fields_set
        and cfg.distill is None
        and not cfg.regularization.auto
        and per_class <= FEW_SHOT_PER_CLASS
    )


def _pairs_fit(cfg: Config) -> bool:
    """Contrastive pairs are same-class or other-class pairs: one class per text. Other problem
    types keep the default stages (logged), as SetFit's pairs go wrong on label combinations."""
    if objective_of(cfg).exclusive:
        return True
    log.info("few labelled texts, but data.problem %s has no one class per text: no contrastive stage", cfg.data.problem)
    return False


def apply_few_shot(cfg: Config, per_class: float) -> tuple[Config, dict[str, Any]]:
    """``cfg`` with the few-shot text stages (and refit) when :func:`wanted`; what changed."""
    if not wanted(cfg, per_class) or not _pairs_fit(cfg):
        return cfg, {}
    chosen: dict[str, Any] = {
        "stages": f"contrastive pairs, then the head ({per_class:.0f} texts a class, at most "
        f"{FEW_SHOT_PER_CLASS}: the few-shot text recipe)"
    }
    data = cfg.data
    if data.refit == "auto":
        data = data.model_copy(update={"refit": "always"})
        chosen["data.refit"] = "always (every labelled text counts at this size)"
    return cfg.model_copy(update={"stages": few_shot_stages(), "data": data}), chosen
