"""What an export holds: the run's whole inference model as one module with plain tensor inputs
(raw uint8 images, or token ids and their attention mask: the modality's ``Task.graph``) ending in
what its objective exports (logits, label probabilities or values), and real inputs to check it on."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tunelab.runs import Run
from tunelab.tasks import task_for


def inference_module(run: Run, *, exported: bool = True) -> nn.Module:
    """The run's model behind plain tensor inputs, in eval mode, with no parameter asking for a
    gradient; ``exported``: ending in its objective's export head (what the graph formats give),
    else in the head's own outputs (what the timm and transformers formats give)."""
    model = run.model.float().eval().requires_grad_(False)
    head = run.objective.export_head() if exported else nn.Identity()
    return task_for(run.config).graph.wrap(model, head).eval()


def input_names(run: Run) -> list[str]:
    return task_for(run.config).graph.input_names(run.config)


def real_examples(run: Run, n: int) -> Any:
    """About ``n`` labelled examples of the run's own test data (the split it held out, or its test
    set), a few of each class: an image or text set."""
    cfg = run.config
    per_class = max(1, math.ceil(n / max(1, len(run.classes))))
    data_cfg = cfg.data.model_copy(update={"test_samples_per_class": per_class})
    return task_for(cfg).held_out(data_cfg, run.classes)


def as_tensors(run: Run, examples: Any, n: int) -> tuple[torch.Tensor, ...]:
    """The first ``n`` of ``examples`` as the exported model takes them: (images,) or
    (input_ids, attention_mask[, token_type_ids])."""
    return task_for(run.config).graph.as_tensors(examples, n)
