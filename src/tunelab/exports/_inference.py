"""What an export holds: the run's whole inference model as one module with plain tensor inputs
(raw uint8 images, or token ids and their attention mask), and real inputs to check it on."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tunelab.runs import Run
from tunelab.tasks import task_for
from tunelab.text.data import Tokens


class ImageClassifier(nn.Module):
    """uint8 images [B, 3, S, S] (0-255, RGB) -> logits [B, K]; the normalisation is inside."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


class TextClassifier(nn.Module):
    """Token ids [B, L] and attention mask [B, L] (right-padded, 1 on tokens), and the segment ids
    of text pairs -> logits [B, K]. Each row is one text: a text longer than the tokenizer's
    max_length is read as its first window (a run reads up to data.text.max_windows and averages)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model(Tokens(input_ids, attention_mask.sum(1), token_type_ids))


def inference_module(run: Run) -> nn.Module:
    """The run's model behind plain tensor inputs, in eval mode, with no parameter asking for a gradient."""
    model = run.model.float().eval().requires_grad_(False)
    wrapped = TextClassifier(model) if run.config.is_text else ImageClassifier(model)
    return wrapped.eval()


def input_names(run: Run) -> list[str]:
    if not run.config.is_text:
        return ["images"]
    pairs = run.config.data.text is not None and run.config.data.text.pair_column is not None
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if pairs else [])


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
    if not run.config.is_text:
        return (examples.inputs[:n].contiguous(),)
    tokens: Tokens = examples.inputs[:n]
    rows = (tokens.ids, tokens.mask)
    return rows + ((tokens.type_ids,) if tokens.type_ids is not None else ())
