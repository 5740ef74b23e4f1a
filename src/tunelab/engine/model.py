"""The model side of the engine: a pretrained backbone without its top, then a new head.

An adapter (images, text) subclasses :class:`FineTuneModel` with its own backbone type; the engine
only relies on what is declared here, in timm's vocabulary: ``forward_features`` (the backbone's
output), the head (``head.pool`` gives the pooled features its classifier ``head.fc`` reads) and
``groups()``, the named parameter groups that freezing and layer-wise learning rates act on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tunelab.heads import Head


class FineTuneModel(nn.Module):
    backbone: nn.Module
    head: Head

    def __init__(self, backbone: nn.Module, head: Head) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward_features(self, x: Any) -> torch.Tensor:
        return run_backbone(self.backbone, x)

    def forward(self, x: Any) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def groups(self) -> list[tuple[str, list[str]]]:
        """Ordered named parameter groups of the whole model, input side first, head last."""
        return named_groups(self.backbone, self.head)

    def compile_blocks(self) -> int:
        """``torch.compile`` the backbone and the head in place (a backbone type may compile its
        blocks one by one: the image model does); returns how many backbone modules were compiled."""
        self.backbone.compile()
        self.head.compile()
        return 1

    def weights_source(self) -> str:
        """Where the backbone's weights came from, for the log: a backbone type that loads them says
        (``source``: packaged, the hub, a file); else they were initialised here."""
        return str(getattr(self.backbone, "source", "initialised here"))

    def drop_paths(self) -> list[nn.Module]:
        """The backbone's stochastic-depth layers (each with ``drop_prob``), for the regularization
        audit; a backbone type that has them says which they are."""
        return []

    def eval_order(self, inputs: Any) -> torch.Tensor | None:
        """The order in which inference batches ``inputs`` (None: as given); a modality whose inputs
        batch better in another order (texts: by length, so that a batch pads little) says so."""
        return None


def run_backbone(backbone: nn.Module, x: Any) -> torch.Tensor:
    """The backbone on ``x``; without an autograd graph when none of it trains."""
    if not any(p.requires_grad for p in backbone.parameters()):
        with torch.no_grad():
            return backbone(x)
    return backbone(x)


def named_groups(backbone: nn.Module, head: nn.Module) -> list[tuple[str, list[str]]]:
    """The backbone's named groups (``backbone.groups``) then one group per head module with
    parameters, as (label, parameter names of the whole model)."""
    groups: list[tuple[str, list[str]]] = getattr(backbone, "groups")  # noqa: B009 (set by each backbone type)
    out = [(f"backbone.{label}", [f"backbone.model.{n}" for n in names]) for label, names in groups]
    for child, module in head.named_children():
        names = [f"head.{child}.{n}" for n, _ in module.named_parameters()]
        if names:
            out.append((f"head.{child}", names))
    return out


class Step(nn.Module):
    """A training step's forward as one module (the cached tail: ``fn`` runs it on cached prefix
    outputs), so that DistributedDataParallel can wrap it; ``model`` holds the parameters."""

    def __init__(self, model: nn.Module, fn: Callable[[Any], torch.Tensor]) -> None:
        super().__init__()
        self.model, self.fn = model, fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.fn(batch)
