"""What the training loop asks of a task (images, texts), and no more: the order of an epoch's
examples, the inputs of a training batch (augmented, perhaps mixed), and the freeze-boundary cache
of a stage.

The loop (:class:`tunelab.engine.trainer.Trainer`) builds one :class:`TaskLoop` per run from the
task's factory (``Task.loop``: ``tunelab.image_loop.ImageLoop``, ``tunelab.text.loop.TextLoop``),
passing itself: the task's side reads the config, data, model, store and ranks from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch


@dataclass
class StagePlan:
    """A stage's cached prefix outputs. ``train`` holds one entry per view (epochs cycle through
    them), each indexable by a batch of example indices; ``val`` the validation set's, sliceable."""

    boundary: Any  # where the stage's frozen prefix ends, in the task's own terms
    train: Any  # [views, N, ...] features, or one CachedStates per view
    val: Any | None


class TaskLoop(Protocol):
    def epoch_order(self, order: torch.Tensor, si: int, epoch: int) -> torch.Tensor:
        """The epoch's example order from its seeded shuffle ``order`` (a function of the seed,
        stage and epoch only, so that a resume repeats it)."""
        ...

    def train_inputs(self, idx: torch.Tensor) -> Any:
        """The model inputs of training examples ``idx``: augmented, on the trainer's device, in
        the model's memory format."""
        ...

    def mix(self, x: Any, y: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """A batch mixed with itself (Mixup/CutMix) and its soft targets [B, classes]; a task that
        does not mix returns ``(x, y)`` as given (class indices)."""
        ...

    def plan(self, si: int) -> StagePlan | None:
        """The frozen prefix's outputs for stage ``si``, computed once (or found in the store), or
        None when the stage has nothing frozen to cache or cannot use a cache."""
        ...

    def forward(self, plan: StagePlan, batch: Any) -> torch.Tensor:
        """Logits of the stage's trainable tail on cached prefix outputs ``batch``."""
        ...
