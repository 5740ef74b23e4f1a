"""What the training loop asks of a task (images, texts), and no more: the order of an epoch's
examples, the inputs of a training batch (augmented, perhaps mixed), and the freeze-boundary cache
of a stage.

The loop (:class:`tunelab.engine.trainer.Trainer`) builds one :class:`TaskLoop` per run from the
task's factory (``Task.loop``: ``tunelab.vision.loop.ImageLoop``, ``tunelab.text.loop.TextLoop``),
given a :class:`LoopContext`: the run's config, data, model, device, feature store and ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from tunelab.config import Config
from tunelab.distributed import Dist
from tunelab.engine.data import Splits
from tunelab.engine.model import FineTuneModel
from tunelab.engine.store import FeatureStore


@dataclass
class LoopContext:
    """What a task's side of the loop may read of the run (and the one thing it writes: ``pooled``)."""

    cfg: Config
    splits: Splits[Any]
    model: FineTuneModel
    device: torch.device
    store: FeatureStore  # the freeze-boundary cache's entries, in memory or memory-mapped files
    dist: Dist
    record_stage: Callable[..., None]  # keep a table printed for a stage in RUN_DIR/stages.json
    # per-step values penalties read: a cached stage puts its batch's pooled features under "pooled"
    step_values: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class StagePlan:
    """A stage's cached prefix outputs. ``train`` holds one entry per view (epochs cycle through
    them), each indexable by a batch of example indices; ``val`` the validation set's, sliceable."""

    boundary: Any  # where the stage's frozen prefix ends, in the task's own terms
    train: Any  # [views, N, ...] features, or one CachedStates per view
    val: Any | None


@dataclass
class ViewBatches:
    """The training inputs a stage's model sees when they are fixed for the whole stage (each view
    of each example the same every epoch): what a frozen teacher's outputs can be computed for once.
    ``batches()`` yields (view, first row, inputs) over ``views`` x ``n`` examples; ``key`` is a
    digest of everything the inputs depend on (the examples, the augmentation, the views, the seed)."""

    key: str
    views: int
    n: int
    batches: Callable[[], Iterator[tuple[int, int, Any]]]


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

    def teacher_inputs(self, si: int, plan: StagePlan | None) -> ViewBatches | None:
        """Stage ``si``'s training inputs as fixed views (epoch e uses view e % views, as ``plan``
        does), or None when they are drawn afresh each step (augmented or mixed on the fly). Given
        a ``plan``, never None: the inputs behind cached features are fixed."""
        ...
